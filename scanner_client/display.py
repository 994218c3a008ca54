"""The doorman's screen: readable from a metre away, and never colour alone.

The answer is written in block letters a few centimetres high (ADMIT / RE-ENTRY / REFUSED) on a
green, yellow or red field, and again as a plain word, because some doormen cannot tell red
from green and a sunlit screen washes colours out. The reason is in plain words; a refusal rings
the terminal bell so a doorman looking at the visitor hears it. An offline decision says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from scanner_client.client import Decision, Result
from scanner_client.codes import grouped

WORDS = {Result.ADMITTED: "ADMIT", Result.REENTRY: "RE-ENTRY", Result.REFUSED: "REFUSED"}
STYLES = {
    Result.ADMITTED: "bold white on dark_green",
    Result.REENTRY: "bold black on yellow",
    Result.REFUSED: "bold white on red3",
}

REASONS = {
    "ok": "Valid card: first visit here today.",
    "reentry": "Valid card: already visited today, this visit is not counted again.",
    "override": "Admitted by a manager.",
    "already_used": "Already used here a few minutes ago: the card may have been passed on.",
    "expired": "The card has expired.",
    "not_yet_valid": "The card is not valid yet.",
    "blocked": "The card is blocked.",
    "replaced": "This card was replaced by a newer card: ask for the new one.",
    "not_accepted_here": "This card type is not accepted here.",
    "invalid_code": "Not a valid card code: scan again or type the card number.",
    "unknown_card": "No card has this number.",
    "temporary_limit_reached": "This temporary card has no visits left.",
    "membership_inactive": "The membership is not active (payment pending or cancelled).",
    "not_synced": "The scanner has never synced: connect it to the network once.",
    "needs_network": "Typed numbers need the network: scan the QR code instead.",
    "offline_refused": "Refused at the door while offline.",
}

# Five-row block letters for the three answers: large without a special font or terminal.
_GLYPHS = {
    "A": (" ### ", "#   #", "#####", "#   #", "#   #"),
    "D": ("#### ", "#   #", "#   #", "#   #", "#### "),
    "E": ("#####", "#    ", "#### ", "#    ", "#####"),
    "F": ("#####", "#    ", "#### ", "#    ", "#    "),
    "I": ("#####", "  #  ", "  #  ", "  #  ", "#####"),
    "M": ("#   #", "## ##", "# # #", "#   #", "#   #"),
    "N": ("#   #", "##  #", "# # #", "#  ##", "#   #"),
    "R": ("#### ", "#   #", "#### ", "#  # ", "#   #"),
    "S": (" ####", "#    ", " ### ", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", " ### "),
    "Y": ("#   #", " # # ", "  #  ", "  #  ", "  #  "),
    "-": ("     ", "     ", " ### ", "     ", "     "),
}


def banner(word: str) -> str:
    """`word` in block letters, five lines high."""
    rows = ["  ".join(_GLYPHS[char][row] for char in word) for row in range(5)]
    return "\n".join(row.replace("#", "█") for row in rows)


def reason_text(reason: str) -> str:
    return REASONS.get(reason, reason.replace("_", " ").capitalize() + ".")


def render(
    decision: Decision, *, counts: Mapping[str, int] | None = None, width: int = 80
) -> Panel:
    """The whole answer as one panel, sized to the terminal."""
    word = WORDS[decision.result]
    style = STYLES[decision.result]
    big = banner(word)
    heading = Text(big if len(big.splitlines()[0]) + 4 <= width else word, style=style)
    label = word + ("   · OFFLINE DECISION" if decision.offline else "")
    lines: list[Text | Table] = [
        heading,
        Text(label, style=style),
        Text(reason_text(decision.reason), style="bold"),
    ]
    details = Table.grid(padding=(0, 2))
    details.add_column(style="dim")
    details.add_column()
    holder = decision.holder
    if holder is not None:
        details.add_row("Holder", holder.name or "(name not known offline)")
        details.add_row("Card", holder.product or holder.product_code or "")
        details.add_row("Number", holder.card_number)
        if holder.valid_until is not None:
            details.add_row("Valid until", holder.valid_until.isoformat())
    elif decision.card_number:
        details.add_row("Number", grouped(decision.card_number))
    if decision.visits_today is not None:
        details.add_row("Visits today", str(decision.visits_today))
    if counts is not None:
        admitted = counts.get("admitted", 0) + counts.get("reentry", 0)
        details.add_row("This door today", f"{admitted} in, {counts.get('refused', 0)} refused")
    lines.append(details)
    return Panel(Group(*lines), border_style=style, padding=(1, 2))


class Screen:
    """Shows each decision: a full-screen panel, or one JSON line for machines (`--output json`)."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        as_json: bool = False,
        bell: bool = True,
        errors: Console | None = None,
    ) -> None:
        self.console = console or Console()
        self.errors = errors or Console(stderr=True)
        self.as_json = as_json
        self.bell = bell

    def show(
        self,
        decision: Decision,
        *,
        counts: Mapping[str, int] | None = None,
        problem: str | None = None,
    ) -> None:
        if self.as_json:
            # Flushed per decision: whoever reads the pipe sees each answer as it is made.
            self.console.file.write(json.dumps(decision.model_dump(mode="json")) + "\n")
            self.console.file.flush()
            return
        if self.console.is_terminal:
            self.console.clear()
        self.console.print(render(decision, counts=counts, width=self.console.width))
        if problem:
            self.console.print(Text(problem, style="bold red"))
        if decision.result is Result.REFUSED and self.bell:
            self.console.bell()

    def message(self, text: str) -> None:
        """A line for the doorman or the log, never mixed into the JSON output."""
        (self.errors if self.as_json else self.console).print(text)
