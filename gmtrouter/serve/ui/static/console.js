// Try it: ranks the candidates live through /ui/api/try (which stores nothing) as the form changes.
"use strict";

(function () {
  const form = document.getElementById("try");
  if (!form) return;
  const cost = document.getElementById("try-cost");
  const costValue = document.getElementById("try-cost-value");
  const errorLine = document.getElementById("try-error");
  const notes = document.getElementById("try-notes");
  const body = document.querySelector("#try-ranking tbody");
  const why = document.getElementById("try-explanation");
  let timer = null;
  let latest = 0;

  function cell(row, text, numeric) {
    const td = row.insertCell();
    td.textContent = text;
    if (numeric) td.className = "num";
    return td;
  }

  function usd(value) {
    return value === null || value === undefined ? "–" : "$" + value.toFixed(4);
  }

  function link(user, item) {
    if (item.conversation.startsWith("route/")) return "/ui/decisions/" + encodeURIComponent(item.conversation.slice(6));
    const query = new URLSearchParams({ user: user, conversation: item.conversation, turn: String(item.turn) });
    return "/ui/interaction?" + query.toString();
  }

  function show(answer) {
    errorLine.hidden = true;
    notes.textContent = answer.notes.join(" ");
    body.replaceChildren();
    answer.ranking.forEach(function (r, i) {
      const row = body.insertRow();
      if (r.llm === answer.llm) row.className = "chosen";
      cell(row, String(i + 1));
      cell(row, r.llm);
      cell(row, r.score.toFixed(3), true);
      cell(row, usd(r.expected_cost), true);
      cell(row, r.adjusted.toFixed(3), true);
    });
    why.replaceChildren();
    answer.explanation.forEach(function (e) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = link(answer.user, e);
      a.textContent = e.query.length > 90 ? e.query.slice(0, 90) + "…" : e.query;
      li.append(a, " ");
      const weight = document.createElement("span");
      weight.className = "muted";
      weight.textContent = "weight " + e.weight.toFixed(2);
      li.append(weight);
      Object.entries(e.ratings).forEach(function ([llm, rating]) {
        const chip = document.createElement("span");
        chip.className = "chip";
        chip.textContent = llm + " " + rating;
        li.append(" ", chip);
      });
      why.append(li);
    });
    if (!answer.explanation.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No past interaction to point to.";
      why.append(li);
    }
  }

  async function rank() {
    const ticket = ++latest;
    form.dataset.state = "busy"; // "done" once the latest request has answered
    const data = new FormData(form);
    const request = {
      user: data.get("user") || "",
      query: data.get("query") || "",
      cost_weight: Number(data.get("cost_weight")),
      candidates: data.getAll("candidates"),
    };
    if (!request.query.trim() || !request.candidates.length) {
      errorLine.textContent = request.query.trim() ? "tick at least one candidate" : "type a query";
      errorLine.hidden = false;
      form.dataset.state = "done";
      return;
    }
    const response = await fetch("/ui/api/try", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(request),
    });
    const answer = await response.json();
    if (ticket !== latest) return; // a newer request is on its way
    form.dataset.state = "done";
    if (!response.ok) {
      errorLine.textContent = answer.detail || "the request failed (" + response.status + ")";
      errorLine.hidden = false;
      return;
    }
    show(answer);
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(rank, 250);
  }

  cost.addEventListener("input", function () {
    costValue.textContent = cost.value;
  });
  form.addEventListener("input", soon); // as the query is typed, not only when the field is left
  form.addEventListener("change", soon);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearTimeout(timer);
    rank();
  });
  rank();
})();
