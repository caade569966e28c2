"""``agenda-decl dashboard``: serve the web dashboard (:mod:`agenda_decl.dashboard`) over the
file's store until Ctrl-C or SIGTERM.

It binds 127.0.0.1 by default; another address needs credentials in the environment
(:mod:`agenda_decl.dashboard.security`), which are never printed. ``--read-only`` offers no
action and refuses every POST; its Agenda is the read-only one of ``plan`` and ``jobs``.
"""

from __future__ import annotations

import asyncio

from agenda_decl.cli.context import (
    EXIT_ERROR,
    EXIT_OK,
    CommandContext,
    CommandFailed,
    build_command_agenda,
    load_checked_config,
    with_ready_agenda,
)

__all__ = ["MISSING_EXTRA", "cmd_dashboard"]

MISSING_EXTRA = ("the dashboard needs Starlette, Jinja2 and uvicorn: "
                 "pip install 'agenda-decl[dashboard]'")


def cmd_dashboard(context: CommandContext) -> int:
    args = context.args
    try:
        from agenda_decl.dashboard import (
            CredentialsError,
            DashboardSettings,
            check_binding,
            credentials_from_env,
            serve,
        )
    except ImportError:
        context.report("config", MISSING_EXTRA)
        return EXIT_ERROR
    try:
        credentials = credentials_from_env()
        check_binding(args.host, credentials)
    except CredentialsError as error:
        context.report("usage", str(error))
        return EXIT_ERROR
    load_checked_config(context, import_payload_classes=True)
    agenda = build_command_agenda(context, read_only=args.read_only)
    settings = DashboardSettings(read_only=args.read_only, credentials=credentials)

    def listening(url: str) -> None:
        mode = "read-only" if args.read_only else "actions on"
        auth = "credentials required" if credentials.required else "no credentials"
        context.output.print(f"dashboard of {context.config.owner} on {url} ({mode}, {auth}); "
                             "Ctrl-C stops it")

    async def work() -> int:
        try:
            await serve(agenda, context.config, host=args.host, port=args.port,
                        settings=settings, on_listening=listening)
        except OSError as error:
            context.report("usage", f"cannot listen on {args.host}:{args.port}: "
                                    f"{error.strerror or error}")
            raise CommandFailed from None
        return EXIT_OK

    return asyncio.run(with_ready_agenda(context, agenda, work))
