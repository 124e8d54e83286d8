// Sends the form as one row to the predict API and shows the answer (or the API's error).
"use strict";
const form = document.getElementById("predict");
const show = (id, text) => {
  const element = document.getElementById(id);
  element.textContent = text;
  element.hidden = false;
};

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  document.getElementById("error").hidden = true;
  const row = {};
  for (const input of form.querySelectorAll("input")) {
    row[input.name] = input.valueAsNumber;
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
    const probability = answer.predictions[0][0];
    const positive = probability >= Number(form.dataset.threshold);
    document.getElementById("probability").textContent = probability.toFixed(4);
    document.getElementById("class").textContent =
      positive ? form.dataset.positive : form.dataset.negative;
    document.getElementById("result").hidden = false;
  } catch (error) {
    document.getElementById("result").hidden = true;
    show("error", error.message);
  }
});
