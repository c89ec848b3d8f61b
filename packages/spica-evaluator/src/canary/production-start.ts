/**
 * How long production's last start took, as its own log shows it: from vLLM's first line
 * ("vLLM API server version …") to the line it writes as the server starts listening
 * ("Starting vLLM API server 0 on http://…", in newer versions "Starting vLLM server on …").
 * Lines look like `INFO 09-03 16:28:10 [api_server.py:1882] vLLM API server version 0.10.2`
 * (vllm-project/vllm#24162), `INFO 03-02 23:59:21 api_server.py:240] …` before 0.6
 * (vllm-project/vllm#3161), possibly behind a `(APIServer pid=1) ` or journald prefix
 * (vllm-project/vllm#44106, 1CatAI/1Cat-vLLM#237). The time vLLM spends before its first line
 * (Python's imports) is not in it: this is a floor for the restore estimate, never the estimate.
 */
const STAMPED = /(?:^|[\s)])(?:INFO|WARNING|DEBUG|ERROR) (\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.\d+)? \[?[\w./-]+:\d+\] (.*)$/;
const FIRST = /vLLM API server version /;
const LISTENING = /Starting vLLM (?:API )?server(?: \d+)? on /;
/** A longer gap is no start but two logs run together (or a DST jump): ignored. */
const MAX_START_SECONDS = 3600;

/** Seconds since an arbitrary origin: the log has no year and no zone, and only differences matter. */
function secondsOf(m: RegExpExecArray): number {
  const [month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number, number];
  return Date.UTC(2000, month - 1, day, hour, minute, second) / 1000;
}

export function lastStartSeconds(lines: readonly string[]): number | null {
  let firstAt: number | null = null;
  let last: number | null = null;
  for (const line of lines) {
    const m = STAMPED.exec(line);
    if (!m) continue;
    const text = m[6] ?? "";
    if (FIRST.test(text)) firstAt = secondsOf(m);
    else if (LISTENING.test(text) && firstAt !== null) {
      const seconds = secondsOf(m) - firstAt;
      if (seconds >= 0 && seconds <= MAX_START_SECONDS) last = seconds;
      firstAt = null;
    }
  }
  return last;
}
