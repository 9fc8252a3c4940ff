// Numbers and times as operators read them.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  let value = Number(n);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** A duration given in milliseconds: "850 ms", "12.3 s", "4 min 05 s", "1 h 02 min". */
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** Elapsed seconds as a clock: "0:07", "12:34", "1:02:03". */
export function clock(seconds) {
  const t = Math.max(0, Math.floor(seconds));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = String(t % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** How long ago, from an age in seconds: "just now", "5 min ago", "3 h 10 min ago", "2 days ago". */
export function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 45) return "just now";
  const m = Math.round(seconds / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(seconds / 3600);
  if (h < 48) {
    const rest = Math.floor((seconds % 3600) / 60);
    return rest && h < 10 ? `${h} h ${rest} min ago` : `${h} h ago`;
  }
  return `${Math.floor(h / 24)} days ago`;
}

const DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const DATE_SECONDS = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function dateTime(iso, { seconds = false } = {}) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return (seconds ? DATE_SECONDS : DATE).format(d);
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "—";
}

/** Hours as said: 26 -> "26 h", 194 -> "8 days 2 h". */
export function hours(h) {
  if (h < 48) return `${+h.toFixed(1)} h`;
  const days = Math.floor(h / 24);
  const rest = Math.round(h - days * 24);
  return rest ? `${days} days ${rest} h` : `${days} days`;
}
