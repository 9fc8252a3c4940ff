// Readiness: GET /check when asked (operators and admins), the report `pgkeep check` prints.
// On demand only: each run connects to the database server and writes a probe object.

import { $, busy, cell, clear, h } from "./dom.js";

const LABELS = { ok: "OK", warn: "Warning", fail: "Failed", skip: "Skipped" };

export class ReadinessView {
  /**
   * @param {import("./api.js").Api} api
   * @param {{fail: (e: Error) => void}} app
   */
  constructor(api, app) {
    this.api = api;
    this.app = app;
  }

  bind() {
    const button = $("#run-checks");
    button.addEventListener("click", () => busy(button, () => this.run()));
  }

  async run() {
    try {
      this.render(await this.api.get("/check"));
    } catch (error) {
      this.app.fail(error);
    }
  }

  /** Forget the last report (sign-out: the next person runs their own). */
  reset() {
    clear($("#readiness-body"));
    $("#readiness-table").hidden = true;
  }

  render(report) {
    const body = clear($("#readiness-body"));
    for (const check of report.checks) {
      body.append(
        h(
          "tr",
          { dataset: { check: check.name, status: check.status } },
          cell("th", "Check", { scope: "row" }, check.name),
          cell("td", "Result", {}, h("span", { class: `badge check-${check.status}` }, LABELS[check.status])),
          cell(
            "td",
            "Detail",
            {},
            h("span", {}, check.detail),
            check.hint ? h("span", { class: "hint" }, `Fix: ${check.hint}`) : null,
          ),
        ),
      );
    }
    $("#readiness-table").hidden = false;
    const count = (status) => report.checks.filter((c) => c.status === status).length;
    const [failed, warned] = [count("fail"), count("warn")];
    const warnings = warned ? ` ${warned} warning${warned > 1 ? "s" : ""}: see ${warned > 1 ? "their" : "its"} fix.` : "";
    $("#readiness-summary").textContent = failed
      ? `${failed} check${failed > 1 ? "s" : ""} failed: the next backup may fail. Each says how to fix it.`
      : warned
        ? `No check failed at ${new Date().toLocaleTimeString()}.${warnings}`
        : `Every check passed at ${new Date().toLocaleTimeString()}.`;
  }
}
