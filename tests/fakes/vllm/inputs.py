"""`vllm.inputs.TokensPrompt` of the test stand-in (a TypedDict in vLLM: a plain dict here too)."""


def TokensPrompt(prompt_token_ids):  # noqa: N802 - vLLM's name
    return {"prompt_token_ids": list(prompt_token_ids)}
