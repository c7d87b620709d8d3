"""Providers: the core's LLM-facing ports implemented over a vendor library (litellm).

Only the composition root (``bot.app``) imports these modules; the core reaches them through
``bot.ports.LanguageModel`` and the image skill's ``ImageGenerator``.

    bot.providers.litellm_llm      ``LiteLLMModel`` (chat completions, streaming) and the quiet litellm import
    bot.providers.litellm_images   ``LiteLLMImageGenerator`` (image edits)
"""
