// The dashboard: sign-in, the role-aware shell, views by URL hash (#backups, #audit).

import { Actions } from "./actions.js";
import { Activity } from "./activity.js";
import { Api, allows, session } from "./api.js";
import { AuditView } from "./audit.js";
import { BackupsView } from "./backups.js";
import { ReadinessView } from "./readiness.js";
import { $, $$ } from "./dom.js";

const STATUS_CLEAR_MS = 8000;

class Dashboard {
  constructor() {
    this.api = new Api(document.body.dataset.api, { onUnauthorized: (e) => this.unauthorized(e) });
    this.me = null;
    this.summary = null;
    this.statusTimer = null;
    const app = {
      role: () => this.me?.role || "viewer",
      fail: (e) => this.fail(e),
      notify: (text) => this.notify(text),
      changed: () => this.changed(),
      database: () => this.summary?.database ?? null,
      lookup: (id) => this.backups.known.get(id),
    };
    this.actions = new Actions(this.api, app);
    this.backups = new BackupsView(this.api, { ...app, actions: this.actions });
    this.audit = new AuditView(this.api, app);
    this.readiness = new ReadinessView(this.api, app);
    this.activity = new Activity(this.api, {
      onSummary: (s) => this.onSummary(s),
      onFinished: (ids) => this.onFinished(ids),
      onStarted: () => this.backups.load(),
      onError: (e) => this.fail(e, "poll"),
    });
  }

  start() {
    $("#signin-form").addEventListener("submit", (e) => this.signIn(e));
    $("#sign-out").addEventListener("click", () => this.signOut("Signed out. The token was removed from this tab."));
    $("#error-dismiss").addEventListener("click", () => this.clearError());
    window.addEventListener("hashchange", () => this.route());
    this.backups.bind();
    this.audit.bind();
    this.readiness.bind();
    this.actions.bind();
    if (session.token()) this.enter();
    else this.showSignIn();
  }

  // --- session -----------------------------------------------------------------------------

  showSignIn(message = "") {
    for (const id of ["#dashboard-view", "#audit-view", "#nav", "#whoami", "#database-name"]) $(id).hidden = true;
    $("#signin-view").hidden = false;
    $("#signin-error").textContent = message;
    $("#token").value = "";
    $("#token").focus();
  }

  async signIn(event) {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (!token) {
      $("#signin-error").textContent = "Paste an API token first.";
      return;
    }
    session.remember(token);
    await this.enter();
  }

  async enter() {
    let me;
    try {
      me = await this.api.get("/me");
    } catch (e) {
      session.forget();
      this.showSignIn(e.status === 401 ? `This token was not accepted: ${e.message}` : e.message);
      return;
    }
    this.me = me;
    this.clearError();
    $("#signin-view").hidden = true;
    $("#token").value = "";
    document.body.dataset.role = me.role;
    for (const el of $$("[data-needs]")) el.hidden = !allows(me.role, el.dataset.needs);
    const expiry = me.expiresAt ? ` · token expires ${me.expiresAt.slice(0, 10)}` : "";
    $("#whoami-text").textContent = `${me.name || "token " + me.id.slice(0, 8)} · ${me.role}${expiry}`;
    $("#whoami").hidden = false;
    $("#nav").hidden = false;
    this.activity.start();
    this.route();
  }

  signOut(message) {
    session.forget();
    this.me = null;
    this.summary = null;
    this.activity.stop();
    this.actions.closeAll();
    this.backups.reset();
    this.audit.reset();
    this.readiness.reset();
    delete document.body.dataset.role;
    this.clearError();
    this.showSignIn();
    this.notify(message);
  }

  unauthorized(error) {
    if (!this.me) return; // the sign-in form reports it itself
    this.signOut("");
    $("#signin-error").textContent = `Signed out: ${error.message}`;
  }

  // --- views -------------------------------------------------------------------------------

  route() {
    if (!this.me) return;
    const wantsAudit = location.hash === "#audit" && allows(this.me.role, "admin");
    $("#dashboard-view").hidden = wantsAudit;
    $("#audit-view").hidden = !wantsAudit;
    $("#nav-backups").toggleAttribute("aria-current", false);
    $("#nav-audit").toggleAttribute("aria-current", false);
    (wantsAudit ? $("#nav-audit") : $("#nav-backups")).setAttribute("aria-current", "page");
    document.title = wantsAudit ? "Audit log · pgkeep" : "Backups · pgkeep";
    if (wantsAudit) this.audit.load();
    else this.backups.load();
  }

  onSummary(summary) {
    if (this.errorFrom === "poll") this.clearError(); // the server answers again
    this.summary = summary;
    const db = $("#database-name");
    db.hidden = !summary.database;
    db.textContent = summary.database ? `database ${summary.database}` : "";
    this.backups.updateProgress(summary);
  }

  onFinished({ backups, restores }) {
    this.backups.load().then(async () => {
      for (const id of backups) {
        const b = this.backups.known.get(id);
        if (b) this.notify(`Backup ${id.slice(0, 8)} ${b.status === "COMPLETED" ? "completed" : `ended ${b.status}`}.`);
      }
    });
    if (restores.length && !$("#audit-view").hidden) this.audit.load();
  }

  /** Something changed through an action: refresh what shows it. */
  changed() {
    this.activity.poll();
    this.backups.load();
    if (!$("#audit-view").hidden) this.audit.load();
  }

  // --- notices -----------------------------------------------------------------------------

  notify(text) {
    const el = $("#status-notice");
    el.textContent = text;
    clearTimeout(this.statusTimer);
    if (text) this.statusTimer = setTimeout(() => { el.textContent = ""; }, STATUS_CLEAR_MS);
  }

  /** Show an error until dismissed; one from polling (`from` "poll") also goes when polling works again. */
  fail(error, from = "action") {
    if (error.status === 401) return; // handled by unauthorized()
    this.errorFrom = from;
    $("#error-text").textContent = error.message || String(error);
    $("#error-notice").hidden = false;
  }

  clearError() {
    this.errorFrom = null;
    $("#error-notice").hidden = true;
    $("#error-text").textContent = "";
  }
}

new Dashboard().start();
