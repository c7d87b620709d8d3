"""QQ through OneBot v11 (NapCat, Lagrange, LLOneBot): ``adapter`` holds ``OneBotAdapter``; the connection
modes (``forward``, ``reverse``, ``http``), message formats (``cqcode``), conversion, pacing, history
catch-up and the send journal live beside it."""
