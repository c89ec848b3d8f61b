export { AuditWriteError, MAX_LINE_BYTES, createAuditFeed } from "./audit-feed.ts";
export type { AuditFeed, AuditFeedDeps, AuditQuery, FollowOptions } from "./audit-feed.ts";
export { AUDIT_EVENT_NAMES, auditLineSchema, parseAuditEvent } from "./events.ts";
export type { AuditEvent, AuditEventInput, AuditEventName, AuditLine } from "./events.ts";
export { dayFile, dayOf, listDays } from "./files.ts";
export { formatEvent } from "./format.ts";
