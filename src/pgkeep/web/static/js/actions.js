// Everything that changes data, each a call to the admin API behind a dialog:
// back up now, verify, restore (dry run first, then the typed database name), delete,
// keep/unkeep, cleanup (the retention plan first).

import { $, clear, h, sleep } from "./dom.js";
import { bytes, clock, dateTime, shortId } from "./format.js";
import { describeBackup } from "./backups.js";

const JOB_POLL_MS = 1000;

function dialogParts(id) {
  const dialog = $(`#${id}`);
  const part = (name) => dialog.querySelector(`[data-role="${name}"]`);
  const parts = { dialog, form: part("form"), error: part("error"), submit: part("submit"), part };
  part("cancel").addEventListener("click", () => dialog.close());
  return parts;
}

function showResult(el, text, good) {
  el.textContent = text;
  el.classList.toggle("good", good === true);
  el.classList.toggle("bad", good === false);
}

/** What other sessions connected to the target mean for the restore (as `pgkeep restore` warns). */
function othersWarning(count, database, atomic) {
  const who = count === 1 ? "1 other session is" : `${count} other sessions are`;
  const what = atomic
    ? "the atomic swap ends them"
    : "a table one of them uses holds the restore up, for PGKEEP_LOCK_WAIT_TIMEOUT at most";
  return `Warning: ${who} connected to ${database}: ${what}.`;
}

export class Actions {
  /**
   * @param {import("./api.js").Api} api
   * @param {{notify: (text: string) => void, changed: () => void, database: () => (string|null),
   *          lookup: (id: string) => (object|undefined)}} app
   */
  constructor(api, app) {
    this.api = api;
    this.app = app;
    this.current = null; // the backup the open dialog is about
  }

  bind() {
    this.backupDialog = dialogParts("backup-dialog");
    this.verifyDialog = dialogParts("verify-dialog");
    this.restoreDialog = dialogParts("restore-dialog");
    this.deleteDialog = dialogParts("delete-dialog");
    this.cleanupDialog = dialogParts("cleanup-dialog");

    $("#backup-now").addEventListener("click", () => this.openBackup());
    $("#cleanup").addEventListener("click", () => this.openCleanup());
    this.backupDialog.form.addEventListener("submit", (e) => this.submitBackup(e));
    this.verifyDialog.form.addEventListener("submit", (e) => this.submitVerify(e));
    this.deleteDialog.form.addEventListener("submit", (e) => this.submitDelete(e));
    this.cleanupDialog.form.addEventListener("submit", (e) => this.submitCleanup(e));
    this.bindRestore();
  }

  /** A row button: `action` on `backup`. */
  run(action, backup, button) {
    this.current = backup;
    if (action === "verify") this.openVerify(backup);
    else if (action === "restore") this.openRestore(backup);
    else if (action === "delete") this.openDelete(backup);
    else if (action === "keep") this.toggleKeep(backup, button);
  }

  closeAll() {
    for (const d of [this.backupDialog, this.verifyDialog, this.restoreDialog, this.deleteDialog, this.cleanupDialog]) {
      if (d?.dialog.open) d.dialog.close();
    }
  }

  // --- back up now ---------------------------------------------------------------------

  openBackup() {
    const { dialog, form, error } = this.backupDialog;
    form.reset(); // MANUAL is the checked default
    error.textContent = "";
    dialog.showModal();
    form.querySelector('input[name="type"]:checked').focus();
  }

  async submitBackup(event) {
    event.preventDefault();
    const { dialog, form, error, submit } = this.backupDialog;
    const type = form.querySelector('input[name="type"]:checked').value;
    error.textContent = "";
    submit.disabled = true;
    try {
      const { data } = await this.api.request("POST", "/backups", { body: { type }, async: true });
      dialog.close();
      this.app.notify(`${type} backup started (${shortId(data.backup.id)}). Its progress shows under "Running now".`);
      this.app.changed();
    } catch (e) {
      error.textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  }

  // --- verify ----------------------------------------------------------------------------

  openVerify(backup) {
    const { dialog, form, error, part } = this.verifyDialog;
    form.reset();
    error.textContent = "";
    showResult(part("result"), "");
    part("subject").textContent = `${describeBackup(backup)} · ${bytes(backup.size)}`;
    dialog.showModal();
    form.querySelector('input[name="level"]:checked').focus();
  }

  async submitVerify(event) {
    event.preventDefault();
    const { form, error, submit, part } = this.verifyDialog;
    const backup = this.current;
    const level = form.querySelector('input[name="level"]:checked').value;
    const result = part("result");
    error.textContent = "";
    showResult(result, `Verifying at level ${level}…`);
    submit.disabled = true;
    try {
      const { data } = await this.api.request("POST", `/backups/${backup.id}/verify`, { body: { level } });
      showResult(result, `${data.valid ? "Valid" : "Not valid"} (${data.level || level}): ${data.message}`, data.valid);
      this.app.changed();
    } catch (e) {
      showResult(result, "");
      error.textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  }

  // --- restore: a dry run, then the real thing behind the typed database name ----------------

  bindRestore() {
    const { dialog, form, part } = this.restoreDialog;
    const confirm = $("#restore-confirm");
    // Any change to what would be restored where voids the dry run that was done.
    for (const el of [form.targetDatabase, form.safetyBackup, form.atomic]) {
      el.addEventListener("input", () => this.voidDryRun());
      el.addEventListener("change", () => this.voidDryRun());
    }
    confirm.addEventListener("input", () => {
      part("restore").disabled = !this.restoreReady || confirm.value !== this.expectedName();
    });
    part("dry-run").addEventListener("click", () => this.runRestore(true));
    part("restore").addEventListener("click", () => this.runRestore(false));
    form.addEventListener("submit", (e) => e.preventDefault());
    dialog.addEventListener("close", () => this.voidDryRun());
  }

  expectedName() {
    return this.restoreDialog.form.targetDatabase.value.trim() || this.app.database() || "";
  }

  voidDryRun() {
    const { part } = this.restoreDialog;
    this.restoreReady = false;
    part("real").disabled = true;
    part("restore").disabled = true;
    $("#restore-confirm").value = "";
    if (!this.restoreRunning) {
      showResult(part("dry-result"), "");
      showResult(part("real-result"), "");
    }
  }

  openRestore(backup) {
    const { dialog, form, error, part } = this.restoreDialog;
    form.reset();
    error.textContent = "";
    this.voidDryRun();
    part("subject").textContent = `${describeBackup(backup)} · ${bytes(backup.size)} · of database ${backup.databaseName || "?"}`;
    part("configured-db").textContent = this.app.database() || "not configured";
    dialog.showModal();
    form.targetDatabase.focus();
  }

  async runRestore(dryRun) {
    const { form, error, part } = this.restoreDialog;
    const backup = this.current;
    const name = this.expectedName();
    if (!dryRun && (!this.restoreReady || $("#restore-confirm").value !== name)) return;
    const out = part(dryRun ? "dry-result" : "real-result");
    const button = part(dryRun ? "dry-run" : "restore");
    const body = {
      dryRun,
      confirmRestore: true,
      safetyBackup: form.safetyBackup.checked,
      atomic: form.atomic.checked,
    };
    const target = form.targetDatabase.value.trim();
    if (target) body.targetDatabase = target;
    error.textContent = "";
    button.disabled = true;
    this.restoreRunning = true;
    showResult(out, dryRun ? "Dry run starting…" : `Restoring into ${name}…`);
    try {
      const { data, location } = await this.api.request("POST", `/backups/${backup.id}/restore`, { body, async: true });
      this.app.changed();
      const job = await this.followJob(location || `/backups/${backup.id}/restores/${data.job.id}`, out, dryRun);
      const ok = job.status === "COMPLETED";
      if (dryRun) {
        const others = ok && job.otherSessions ? ` ${othersWarning(job.otherSessions, name, body.atomic)}` : "";
        showResult(out, ok ? `Dry run passed: ${job.message}${others}` : `Dry run failed: ${job.message}`, ok);
        if (ok) {
          this.restoreReady = true;
          part("confirm-name").textContent = name;
          part("real").disabled = false;
          $("#restore-confirm").focus();
        }
      } else {
        showResult(out, ok ? `Restore finished: ${job.message}` : `Restore failed: ${job.message}`, ok);
        this.app.notify(ok ? `Restore of ${shortId(backup.id)} into ${name} finished.` : `Restore of ${shortId(backup.id)} failed: ${job.message}`);
        this.voidDryRunAfterRestore();
      }
      this.app.changed();
    } catch (e) {
      showResult(out, "");
      error.textContent = e.message;
    } finally {
      this.restoreRunning = false;
      button.disabled = dryRun ? false : !this.restoreReady;
    }
  }

  voidDryRunAfterRestore() {
    // A restore is not repeated by pressing the button twice: a new one needs a new dry run.
    const { part } = this.restoreDialog;
    this.restoreReady = false;
    part("real").disabled = true;
    part("restore").disabled = true;
    $("#restore-confirm").value = "";
  }

  /** Poll a restore job until it ends, showing its elapsed time; resolves to the final job. */
  async followJob(location, out, dryRun) {
    const started = Date.now();
    for (;;) {
      const job = await this.api.get(location);
      if (job.status !== "IN_PROGRESS") return job;
      showResult(out, `${dryRun ? "Dry run" : "Restore"} running… ${clock((Date.now() - started) / 1000)} elapsed`);
      await sleep(JOB_POLL_MS);
    }
  }

  // --- delete, keep ----------------------------------------------------------------------

  openDelete(backup) {
    const { dialog, error, part } = this.deleteDialog;
    error.textContent = "";
    part("subject").textContent = `${describeBackup(backup)} · ${backup.status} · ${bytes(backup.size)} · ${backup.filename}`;
    dialog.showModal();
    part("cancel").focus();
  }

  async submitDelete(event) {
    event.preventDefault();
    const { dialog, error, submit } = this.deleteDialog;
    const backup = this.current;
    submit.disabled = true;
    error.textContent = "";
    try {
      const { data } = await this.api.request("DELETE", `/backups/${backup.id}`);
      dialog.close();
      this.app.notify(`${data.message} (${describeBackup(backup)}).`);
      this.app.changed();
    } catch (e) {
      error.textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  }

  async toggleKeep(backup, button) {
    button.disabled = true;
    try {
      const { data } = await this.api.request("POST", `/backups/${backup.id}/keep`, { body: { keep: !backup.keep } });
      this.app.notify(data.keep
        ? `Kept ${describeBackup(backup)}: retention will not delete it.`
        : `Released ${describeBackup(backup)}: retention applies to it again.`);
      this.app.changed();
    } catch (e) {
      this.app.fail(e);
      button.disabled = false;
    }
  }

  // --- cleanup ---------------------------------------------------------------------------

  async openCleanup() {
    const { dialog, error, submit, part } = this.cleanupDialog;
    const plan = clear(part("plan"));
    error.textContent = "";
    showResult(part("result"), "");
    submit.disabled = true;
    submit.textContent = "Delete expired backups";
    plan.append(h("p", {}, "Computing the retention plan…"));
    dialog.showModal();
    part("cancel").focus();
    try {
      const { data } = await this.api.request("POST", "/backups/cleanup", { body: { dryRun: true } });
      this.renderPlan(data);
    } catch (e) {
      clear(plan);
      error.textContent = e.message;
    }
  }

  renderPlan(data) {
    const { submit, part } = this.cleanupDialog;
    const plan = clear(part("plan"));
    const decisions = data.plan || [];
    const remove = decisions.filter((d) => d.action === "delete");
    const keep = decisions.filter((d) => d.action !== "delete");
    const table = (rows) => h("div", { class: "plan-table" },
      h("table", { class: "data" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Backup"), h("th", { scope: "col" }, "Reasons"))),
        h("tbody", {}, rows.map((d) => h("tr", { dataset: { planId: d.id, action: d.action } },
          h("th", { scope: "row", "data-label": "Backup" }, this.label(d.id)),
          h("td", { "data-label": "Reasons" }, (d.reasons || []).join("; ")))))));
    plan.append(h("p", { "data-part": "plan-summary" },
      h("strong", {}, `${remove.length} backup${remove.length === 1 ? "" : "s"} would be deleted`),
      `, ${keep.length} kept.`));
    if (remove.length) plan.append(h("h3", {}, "Would be deleted"), table(remove));
    if (keep.length) {
      plan.append(h("details", {}, h("summary", {}, `Kept (${keep.length}) and why`), table(keep)));
    }
    if (data.warnings?.length) {
      plan.append(h("h3", {}, "Warnings"), h("ul", {}, data.warnings.map((w) => h("li", {}, w))));
    }
    submit.disabled = remove.length === 0;
    submit.textContent = remove.length ? `Delete ${remove.length} expired backup${remove.length === 1 ? "" : "s"}` : "Nothing to delete";
  }

  label(id) {
    const b = this.app.lookup(id);
    return b ? `${b.type} · ${dateTime(b.startedAt)} · ${b.status} (${shortId(id)})` : shortId(id);
  }

  async submitCleanup(event) {
    event.preventDefault();
    const { error, submit, part } = this.cleanupDialog;
    submit.disabled = true;
    error.textContent = "";
    try {
      const { data } = await this.api.request("POST", "/backups/cleanup", { body: { dryRun: false } });
      const failed = Object.entries(data.failed || {});
      showResult(part("result"),
        [data.message + ".", ...failed.map(([id, why]) => `Not deleted ${shortId(id)}: ${why}`)].join("\n"),
        failed.length === 0);
      submit.textContent = "Done";
      this.app.changed();
    } catch (e) {
      error.textContent = e.message;
      submit.disabled = false;
    }
  }
}
