// Recoverability at a glance and what is running, from GET /summary.
// Polled every 1.5 s while something runs (progress must move at least every 2 s), every 5 s
// otherwise; elapsed times tick every second from the server's clock, so a skewed client
// clock does not show a backup as running for minus three minutes.

import { $, clear, h } from "./dom.js";
import { ago, bytes, clock, dateTime, hours, shortId } from "./format.js";

const BUSY_MS = 1500;
const IDLE_MS = 5000;

export class Activity {
  /**
   * @param {import("./api.js").Api} api
   * @param {{onFinished: (ids: {backups: string[], restores: string[]}) => void,
   *          onStarted: () => void, onSummary: (summary: object) => void, onError: (e: Error) => void}} hooks
   */
  constructor(api, hooks) {
    this.api = api;
    this.hooks = hooks;
    this.summary = null;
    this.offsetMs = 0; // server clock minus client clock
    this.timer = null;
    this.ticker = null;
    this.running = false;
    this.seen = { backups: new Set(), restores: new Set() };
  }

  start() {
    this.running = true;
    this.poll();
    this.ticker = setInterval(() => this.renderElapsed(), 1000);
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    this.summary = null;
    this.seen = { backups: new Set(), restores: new Set() };
  }

  /** Poll now (after an action), then on the usual schedule. */
  async poll() {
    clearTimeout(this.timer);
    if (!this.running) return;
    if (!document.hidden) {
      try {
        const summary = await this.api.get("/summary");
        if (!this.running) return;
        this.offsetMs = new Date(summary.now).getTime() - Date.now();
        this.render(summary);
      } catch (error) {
        if (!this.running) return;
        this.hooks.onError(error);
      }
    }
    const busy = this.summary && (this.summary.runningBackups.length || this.summary.runningRestores.length);
    clearTimeout(this.timer); // an overlapping poll (after an action) must not leave two loops
    if (this.running) this.timer = setTimeout(() => this.poll(), busy ? BUSY_MS : IDLE_MS);
  }

  render(summary) {
    const previous = this.seen;
    const now = {
      backups: new Set(summary.runningBackups.map((b) => b.id)),
      restores: new Set(summary.runningRestores.map((r) => r.id)),
    };
    const finished = {
      backups: [...previous.backups].filter((id) => !now.backups.has(id)),
      restores: [...previous.restores].filter((id) => !now.restores.has(id)),
    };
    const started = [...now.backups].some((id) => !previous.backups.has(id));
    this.seen = now;
    this.summary = summary;
    this.hooks.onSummary(summary);
    renderFreshness($("#fresh-backup"), summary.lastBackup, "backup");
    renderFreshness($("#fresh-drill"), summary.lastRestoreDrill, "restore drill");
    this.renderRunning(summary);
    if (finished.backups.length || finished.restores.length) this.hooks.onFinished(finished);
    else if (started) this.hooks.onStarted();
  }

  renderRunning(summary) {
    const list = clear($("#activity-list"));
    const items = [
      ...summary.runningBackups.map((b) =>
        h("li", { dataset: { kind: "backup", id: b.id, started: b.startedAt || "" } },
          h("span", { class: "what" }, `Backup ${b.type}${b.databaseName ? ` of ${b.databaseName}` : ""}`),
          h("span", { class: "badge IN_PROGRESS" }, b.status === "PENDING" ? "PENDING" : "IN PROGRESS"),
          h("span", { "data-part": "bytes" }, `${bytes(b.bytesWritten)} written`),
          h("span", {}, "elapsed ", h("span", { "data-part": "elapsed" }, this.elapsed(b.startedAt))),
          h("progress", { "aria-label": `Backup ${shortId(b.id)} in progress` }),
        )),
      ...summary.runningRestores.map((r) =>
        h("li", { dataset: { kind: "restore", id: r.id, started: r.startedAt || "" } },
          h("span", { class: "what" }, `${restoreKind(r)} of backup ${shortId(r.backupId)}`),
          h("span", { class: "badge IN_PROGRESS" }, "IN PROGRESS"),
          h("span", { "data-part": "bytes" }, readSoFar(r)),
          h("span", {}, "elapsed ", h("span", { "data-part": "elapsed" }, this.elapsed(r.startedAt))),
          // Determinate once the backup's size is known: how much of it this pass has read.
          h("progress", {
            "aria-label": `Restore ${shortId(r.id)} in progress`,
            max: r.totalBytes || null,
            value: r.totalBytes ? Math.min(r.bytesRead || 0, r.totalBytes) : null,
          }),
        )),
    ];
    list.append(...items);
    $("#activity-empty").hidden = items.length > 0;
  }

  elapsed(startedAt) {
    if (!startedAt) return "—";
    return clock((Date.now() + this.offsetMs - new Date(startedAt).getTime()) / 1000);
  }

  renderElapsed() {
    for (const li of $("#activity-list").children) {
      const target = li.querySelector('[data-part="elapsed"]');
      if (target) target.textContent = this.elapsed(li.dataset.started);
    }
  }
}

function renderFreshness(card, fresh, what) {
  const stale = Boolean(fresh.stale);
  card.classList.toggle("stale", stale);
  card.dataset.stale = String(stale);
  card.querySelector('[data-part="age"]').textContent = fresh.at ? ago(fresh.ageSeconds) : "Never";
  card.querySelector('[data-part="when"]').textContent = fresh.at ? dateTime(fresh.at) : `No successful ${what} recorded.`;
  card.querySelector('[data-part="verdict"]').textContent = stale
    ? `Overdue: older than the ${hours(fresh.windowHours)} alert window`
    : `OK: within the ${hours(fresh.windowHours)} alert window`;
}

function restoreKind(restore) {
  if (restore.kind === "physical") return "Point-in-time restore";
  return restore.dryRun ? "Dry-run restore" : "Restore";
}

/** "12.0 MiB of 40.0 MiB read": how far the current pass of a restore over its backup got. */
function readSoFar(restore) {
  const read = bytes(restore.bytesRead || 0);
  return restore.totalBytes ? `${read} of ${bytes(restore.totalBytes)} read` : `${read} read`;
}
