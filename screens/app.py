"""The custodian Textual app (shell; screens arrive in their own modules)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static

from custodian.service import Service


class CustodianApp(App[None]):
    TITLE = "custodian"

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service

    def compose(self) -> ComposeResult:
        yield Header()
        st = self.service.status()
        yield Static(f"{st.home}  {st.backup_count} backups", markup=False)
        yield Footer()


def run(service: Service) -> None:
    CustodianApp(service).run()
