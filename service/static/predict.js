// Sends the form as one row to the predict API and shows the answer for the model's task (or
// the API's error). An empty field is a missing value: null.
"use strict";
const form = document.getElementById("predict");
const show = (id, text) => {
  const element = document.getElementById(id);
  element.textContent = text;
  element.hidden = false;
};

// What one row of the answer means, by task: [p_positive], [p_label1, ...] or [value].
const render = {
  binary([probability]) {
    document.getElementById("probability").textContent = probability.toFixed(4);
    document.getElementById("class").textContent =
      probability >= Number(form.dataset.threshold) ? form.dataset.positive
        : form.dataset.negative;
  },
  multiclass(probabilities) {
    const cells = document.querySelectorAll("#probabilities output");
    cells.forEach((cell, index) => { cell.textContent = probabilities[index].toFixed(4); });
    const best = probabilities.indexOf(Math.max(...probabilities));
    document.getElementById("class").textContent = cells[best].dataset.label;
  },
  regression([value]) {
    document.getElementById("value").textContent = Number(value.toPrecision(6)).toString();
  },
};

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  document.getElementById("error").hidden = true;
  const row = {};
  for (const field of form.querySelectorAll("input, select")) {
    if (field.value === "") {
      row[field.name] = null;
    } else {
      row[field.name] = field.tagName === "SELECT" ? field.value : Number(field.value);
    }
  }
  const body = JSON.stringify({instances: [row]});
  document.getElementById("curl").textContent =
    `curl -d '${body}' ${new URL(form.dataset.url, location.href)}`;
  try {
    const response = await fetch(form.dataset.url, {method: "POST", body});
    const answer = await response.json();
    if (!response.ok) {
      throw new Error(answer.error || response.statusText);
    }
    render[form.dataset.task](answer.predictions[0]);
    document.getElementById("result").hidden = false;
  } catch (error) {
    document.getElementById("result").hidden = true;
    show("error", error.message);
  }
});
