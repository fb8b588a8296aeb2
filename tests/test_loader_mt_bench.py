from collections import Counter

from gmtrouter.data.loaders import prepare
from gmtrouter.evaluation.stats import record_stats


def test_mt_bench_human_votes(data_dir) -> None:
    records = prepare("mt-bench", data_dir / "mt_bench")
    stats = record_stats(records)
    assert stats["records"] == 1689
    assert stats["users"] == 65
    assert stats["llms"] == 6
    assert stats["queries"] == 80
    assert stats["ties"] == 405
    assert stats["rated_pairs"] == 1689 - 405


def test_mt_bench_order_text_and_cost(data_dir) -> None:
    records = prepare("mt-bench", data_dir / "mt_bench")
    first = records[0]
    # First upstream vote: question 81, author_2, alpaca-13b vs gpt-3.5-turbo, winner model_b.
    assert (first.user, first.turn) == ("author_2", 1)
    assert first.llms == ["alpaca-13b", "gpt-3.5-turbo"]
    assert first.ratings == [0.0, 1.0]
    assert first.query.startswith("Compose an engaging travel blog post about a recent trip to Hawaii")
    assert first.responses[1].text and "Hawaii" in first.responses[1].text
    assert first.meta["category"] == "writing"
    # gpt-3.5-turbo costs $1.5/$2 per 1M tokens: a few hundred tokens cost well under a cent.
    assert 0 < first.responses[1].cost < 0.01
    gpt4 = next(r for rec in records for r in rec.responses if r.llm == "gpt-4")
    assert gpt4.cost > first.responses[1].cost
    assert Counter(tuple(r.ratings) for r in records)[(0.5, 0.5)] == 405
