"""LLM prices and descriptions, and the token estimate behind every cost.

Costs are USD: input tokens times the input price plus output tokens times the output price, prices per 1M
tokens. Where a source gives no token counts we estimate them as ceil(characters / 4), the usual rule of
thumb for English text with GPT-style tokenizers; it is an estimate, documented as such in docs/data.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Token count estimate for text without a tokenizer: ceil(len / 4), at least 1 for non-empty text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class LLMInfo:
    """What we know of one LLM: prices in USD per 1M tokens and a free-text description."""

    name: str
    input_price: float | None = None
    output_price: float | None = None
    description: str = ""
    cached_input_price: float | None = None  # what a cached prompt prefix costs instead of the input price

    def cost(self, input_tokens: int, output_tokens: int) -> float | None:
        if self.input_price is None or self.output_price is None:
            return None
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6


class PriceBook:
    """LLM name -> LLMInfo, merged from the price and description files of a data directory."""

    def __init__(self, infos: dict[str, LLMInfo] | None = None) -> None:
        self.infos: dict[str, LLMInfo] = dict(infos or {})

    def get(self, llm: str) -> LLMInfo:
        return self.infos.get(llm) or self.infos.get(llm.split("/")[-1]) or LLMInfo(llm)

    def cost(self, llm: str, input_tokens: int, output_tokens: int) -> float | None:
        return self.get(llm).cost(input_tokens, output_tokens)

    def description(self, llm: str) -> str:
        return self.get(llm).description

    def cached_input_prices(self) -> dict[str, tuple[float, float]]:
        """LLM -> (input price, cached-input price) for every LLM whose prompt cache has a price."""
        return {
            name: (info.input_price, info.cached_input_price)
            for name, info in self.infos.items()
            if info.input_price is not None and info.cached_input_price is not None
        }

    @classmethod
    def read(cls, path: str | Path) -> PriceBook:
        """One price file of public list prices, {name: {input, output, cached_input?}} in USD per 1M tokens."""
        book = cls()
        book._read_list_prices(Path(path))
        return book

    def _merge(self, name: str, **fields: object) -> None:
        old = self.infos.get(name, LLMInfo(name))
        new = {k: v for k, v in fields.items() if v not in (None, "")}
        self.infos[name] = LLMInfo(**{**old.__dict__, **new})

    @classmethod
    def discover(cls, data_dir: str | Path | None) -> PriceBook:
        """Read the price and description files in `data_dir` or its parent (`prices/`, `llmrouter/`)."""
        book = cls()
        if data_dir is None:
            return book
        roots = [Path(data_dir), Path(data_dir).parent]
        for root in roots:
            for path in sorted(root.glob("prices/LLM_Descriptions_v*.json")) + sorted(
                root.glob("LLM_Descriptions_v*.json")
            ):
                book._read_descriptions(path)
            for path in [root / "llmrouter" / "llm_candidates.json", root / "llm_candidates.json"]:
                if path.is_file():
                    book._read_descriptions(path)
            for path in [root / "prices" / "public_list_prices.json", root / "public_list_prices.json"]:
                if path.is_file():
                    book._read_list_prices(path)
        return book

    def _read_descriptions(self, path: Path) -> None:
        """Files of {name: {feature, input_price, output_price, model}}; also indexed by the hosted id."""
        for name, entry in json.loads(path.read_text(encoding="utf-8")).items():
            fields = {
                "input_price": entry.get("input_price"),
                "output_price": entry.get("output_price"),
                "description": " ".join(str(entry.get("feature", "")).split()),
            }
            self._merge(name, **fields)
            if entry.get("model"):
                self._merge(str(entry["model"]).split("/", 1)[-1], **fields)

    def _read_list_prices(self, path: Path) -> None:
        """The file of public list prices {name: {input, output, cached_input?, basis}}; fills prices only."""
        for name, entry in json.loads(path.read_text(encoding="utf-8")).items():
            if name.startswith("_"):
                continue
            self._merge(
                name,
                input_price=entry.get("input"),
                output_price=entry.get("output"),
                cached_input_price=entry.get("cached_input"),
            )
