// Rater page of the speechlm listening test: instructions, listening check, then one item at a time.
// The server decides everything (phase, next item, validity); this page only plays audio and asks.
"use strict";
(() => {
  const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const api = (path) => `/api/r/${encodeURIComponent(token)}/${path}`;
  const app = document.getElementById("app");
  const errorBox = document.getElementById("error");
  let current = null; // the audio element playing now: starting one pauses the other

  const INSTRUCTIONS = {
    acr: "You will hear speech samples one at a time. Play each sample to the end, then rate its overall quality on the five-point scale from Bad to Excellent.",
    cmos: "Each item has two samples, A and B, of the same sentence. Play both to the end, then rate the quality of B compared with A, from Much worse to Much better.",
    ab: "Each item has two samples, A and B, of the same sentence. Play both to the end, then choose the one whose quality you prefer.",
    mushra: "Each item has a reference and several numbered samples of the same sentence; one of them is the reference itself, hidden. Play every sample to the end and rate each from 0 to 100 against the reference. Give the hidden reference 100.",
  };

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (v === true) node.setAttribute(k, "");
      else if (v !== false && v != null) node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }

  async function request(path, body) {
    const opts = body === undefined ? {} : {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    };
    const res = await fetch(api(path), {cache: "no-store", ...opts});
    const data = await res.json().catch(() => ({error: `server answered ${res.status}`}));
    if (!res.ok) throw new Error(data.error || `server answered ${res.status}`);
    return data;
  }

  function setProgress(p) {
    if (!p) return;
    document.getElementById("progress-wrap").hidden = false;
    const bar = document.getElementById("progress");
    bar.max = p.total;
    bar.value = p.done;
    document.getElementById("progress-text").textContent = `${p.done} / ${p.total}`;
  }

  // A play button whose audio must reach its end once before the answer it guards is enabled.
  function player(url, label, onHeard) {
    const audio = el("audio", {preload: "auto", src: url});
    const name = label ? ` ${label}` : "";
    const button = el("button", {type: "button", class: "play", "data-heard": "false", text: `▶ Play${name}`});
    const reset = () => { button.textContent = `${button.dataset.heard === "true" ? "✓" : "▶"} Play${name}`; };
    button.addEventListener("click", () => {
      if (current === audio && !audio.paused) { audio.pause(); audio.currentTime = 0; reset(); return; }
      if (current && current !== audio) { current.pause(); current.currentTime = 0; current.dispatchEvent(new Event("stopped")); }
      current = audio;
      audio.currentTime = 0;
      audio.play().then(() => { button.textContent = `■ Stop${name}`; })
        .catch((e) => showError(`cannot play audio: ${e.message}`));
    });
    audio.addEventListener("stopped", reset);
    audio.addEventListener("ended", () => {
      button.dataset.heard = "true";
      reset();
      onHeard();
    });
    audio.addEventListener("error", () => showError("an audio file failed to load; please reload the page"));
    const listened = () => {
      let s = 0;
      for (let i = 0; i < audio.played.length; i++) s += audio.played.end(i) - audio.played.start(i);
      return s;
    };
    return {audio, button, listened, heard: () => button.dataset.heard === "true"};
  }

  function options(name, values, labels, disabled) {
    const box = el("div", {class: "options", role: "radiogroup"});
    values.forEach((v, i) => {
      const input = el("input", {type: "radio", name, value: String(v), disabled});
      box.append(el("label", {}, input, el("span", {text: labels ? ` ${labels[i]}` : ` ${v}`})));
    });
    return box;
  }

  function chosen(box) {
    const input = box.querySelector("input:checked");
    return input ? input.value : null;
  }

  function renderIntro(state) {
    const start = el("button", {id: "start", class: "primary", type: "button", text: "Start"});
    start.addEventListener("click", async () => {
      try { await request("start", {}); route(); } catch (e) { showError(e.message); }
    });
    app.replaceChildren(el("div", {class: "card"},
      el("h2", {text: "Instructions"}),
      el("p", {text: "Please wear headphones and sit in a quiet room. Keep the volume at a comfortable level and do not change it during the test."}),
      el("p", {text: INSTRUCTIONS[state.test_type]}),
      el("p", {text: "First comes a short listening check, then a few training items so you can get used to the range of quality; training answers are not counted."}),
      start));
  }

  async function renderCheck() {
    const check = await request("check");
    const card = el("div", {class: "card"}, el("h2", {text: "Listening check"}));
    const submit = el("button", {id: "check-submit", class: "primary", type: "button", text: "Continue", disabled: true});
    const groups = [];
    const update = () => { submit.disabled = !groups.every((g) => chosen(g.box) !== null); };
    check.clips.forEach((clip, i) => {
      const box = options(`check-${i}`, clip.options, null, true);
      const p = player(clip.url, `sound ${i + 1}`, () => {
        box.querySelectorAll("input").forEach((inp) => { inp.disabled = false; });
      });
      box.addEventListener("change", update);
      groups.push({clip, box});
      card.append(el("div", {class: "check", "data-name": clip.name},
        el("p", {text: `${i + 1}. ${clip.question}`}), p.audio, p.button, box));
    });
    submit.addEventListener("click", async () => {
      const answers = {};
      for (const g of groups) answers[g.clip.name] = Number(chosen(g.box));
      try {
        const res = await request("check", {answers});
        showError(res.passed ? "" : res.message);
        route();
      } catch (e) { showError(e.message); }
    });
    card.append(submit);
    app.replaceChildren(card);
  }

  async function renderItem(state) {
    const next = await request("next");
    setProgress(next.progress);
    if (next.done) { route(); return; }
    const item = next.item;
    const scale = state.scale;
    const card = el("div", {class: "card item", "data-item": item.id});
    if (item.training) card.append(el("p", {class: "training", text: "Training item: your answer is not counted."}));
    card.append(el("p", {text: scale.question}));
    const submit = el("button", {id: "submit", class: "primary", type: "button", text: "Next", disabled: true});
    let players = [];
    let answerBox = null;
    let sliders = [];
    const allHeard = () => players.every((p) => p.heard());
    const answer = () => {
      if (scale.kind === "slider") return Object.fromEntries(sliders.map((s) => [s.name, Number(s.input.value)]));
      const v = chosen(answerBox);
      if (v === null) return null;
      return scale.kind === "choice" ? v : Number(v);
    };
    const update = () => {
      const heard = allHeard();
      card.querySelectorAll(".answer input").forEach((inp) => { inp.disabled = !heard; });
      submit.disabled = !(heard && answer() !== null);
    };
    if (item.reference) {
      const ref = player(item.reference.url, "reference", () => {});
      ref.button.id = "play-reference";
      card.append(el("div", {class: "players"}, ref.audio, ref.button));
    }
    if (scale.kind === "slider") {
      const bands = el("span", {class: "bands"}, ...scale.labels.map((lab) => el("span", {text: lab})));
      const rows = el("div", {class: "answer"}, el("div", {class: "slider-row"}, el("span"), bands, el("span")));
      for (const s of item.stimuli) {
        const p = player(s.url, s.label, update);
        p.button.dataset.name = s.name;
        players.push(p);
        const input = el("input", {type: "range", min: "0", max: "100", step: "1", value: "0", disabled: true,
          "data-name": s.name, "aria-label": `score of sample ${s.label}`});
        const shown = el("span", {text: "0"});
        input.addEventListener("input", () => { shown.textContent = input.value; update(); });
        sliders.push({name: s.name, input});
        rows.append(el("div", {class: "slider-row"}, el("span", {}, p.audio, p.button), input, shown));
      }
      card.append(rows);
    } else {
      const row = el("div", {class: "players"});
      for (const s of item.stimuli) {
        const p = player(s.url, s.label === "Sample" ? "" : s.label, update);
        p.button.dataset.name = s.name;
        players.push(p);
        row.append(p.audio, p.button);
      }
      const labels = scale.values.map((v, i) => (scale.kind === "category" ? `${v} ${scale.labels[i]}` : scale.labels[i]));
      answerBox = options("rating", scale.values, labels, true);
      answerBox.classList.add("answer");
      answerBox.addEventListener("change", update);
      card.append(row, el("p", {class: "hint", text: "The answers unlock once every sample has played to the end."}), answerBox);
    }
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      const listened = players.reduce((sum, p) => sum + p.listened(), 0);
      try {
        await request("rate", {item_id: item.id, value: answer(), listened_s: listened});
        showError("");
        if (current) current.pause();
        route();
      } catch (e) { showError(e.message); update(); }
    });
    card.append(submit);
    app.replaceChildren(card);
  }

  function renderEnd(state) {
    if (state.phase === "locked") {
      app.replaceChildren(el("div", {class: "card", id: "locked"},
        el("p", {text: "The listening check was not passed, so this test cannot continue. Thank you for your time."})));
      return;
    }
    app.replaceChildren(el("div", {class: "card", id: "done"},
      el("h2", {text: "Thank you!"}),
      el("p", {text: "All items are rated. You can close this page."}),
      el("p", {}, "Completion code: ", el("code", {id: "completion-code", text: state.completion_code}))));
  }

  async function route() {
    try {
      const state = await request("state");
      setProgress(state.phase === "rating" || state.phase === "done" ? state.progress : null);
      if (state.phase === "intro") renderIntro(state);
      else if (state.phase === "check") await renderCheck();
      else if (state.phase === "rating") await renderItem(state);
      else renderEnd(state);
    } catch (e) {
      showError(e.message);
    }
  }

  route();
})();
