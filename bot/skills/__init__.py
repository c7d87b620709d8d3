"""The member's built-in skills. Each module here exposes ``build(env: bot.plugins.SkillEnv) -> SkillSet``
(its ``bot.commands.Skill`` objects: commands, LLM tools, observers; and background services with async
``start()``/``stop()``, e.g. the reminder scheduler) and a ``plugin`` (``bot.plugins.SkillPlugin``) registered
under the ``paibot.skills`` entry-point group in pyproject.toml, exactly like a third-party skill.
``skills.<name>.enabled: false`` turns one off. What several of them share is typed in ``resources``.
"""
