import { dirname } from "node:path";

/** A file-system error in an operator's words: what is wrong on the disk, and what to do about it. */
export interface FileSystemProblem {
  errno: string;
  /** e.g. "the file system holding /home/kloros/.kloros/locks is read-only (EROFS)" */
  reason: string;
  /** the fix, naming the file or folder and the command that shows more */
  fix: string;
}

/**
 * The outside world's faults on a file gpu-canary reads or writes — a full disk, a read-only
 * mount, a folder or a link loop where the file should be, permissions — with the fix for each;
 * null for an errno that is not one of them (those stay as Node words them). `path` is the file
 * gpu-canary meant, not a temp file beside it.
 */
export function fileSystemProblem(errno: string | undefined, path: string): FileSystemProblem | null {
  const dir = dirname(path);
  const links = `\`namei -l ${path}\` shows each folder on the way, its owner, mode and links`;
  switch (errno) {
    case "ENOSPC":
      return {
        errno,
        reason: `the file system holding ${dir} is full (ENOSPC)`,
        fix: `free space on it (\`df -h ${dir}\` shows how much is left), then run the command again`,
      };
    case "EDQUOT":
      return {
        errno,
        reason: `the disk quota of the user writing ${dir} is used up (EDQUOT)`,
        fix: "free space or raise the quota (`quota -s` shows it), then run the command again",
      };
    case "EROFS":
      return {
        errno,
        reason: `the file system holding ${dir} is read-only (EROFS)`,
        fix: `remount it read-write (\`findmnt -T ${dir}\` shows the mount), or point KLR_HOME at a writable folder; under systemd, a ProtectSystem= unit needs the folder in ReadWritePaths=`,
      };
    case "EISDIR":
      return {
        errno,
        reason: "a folder is where the file should be (EISDIR)",
        fix: `move the folder ${path} aside (gpu-canary never removes it for you), then run the command again`,
      };
    case "ENOTDIR":
      return {
        errno,
        reason: "a part of its path is a file where a folder should be (ENOTDIR)",
        fix: `move that file aside so the folder can be created: ${links}`,
      };
    case "ELOOP":
      return {
        errno,
        reason: "a symbolic link on its path loops, or is one gpu-canary does not follow (ELOOP)",
        fix: `replace the link at fault by a real folder or file: ${links}`,
      };
    case "EACCES":
    case "EPERM":
      return {
        errno,
        reason: `permission denied (${errno})`,
        fix: `let the user gpu-canary runs as (\`id -un\`) write ${dir}, or run it as the folder's owner: ${links}${errno === "EPERM" ? "; `lsattr` shows an immutable attribute" : ""}`,
      };
    case "EIO":
      return {
        errno,
        reason: `the disk holding ${dir} reported an I/O error (EIO)`,
        fix: "check the disk and the kernel's log (`journalctl -k`, `dmesg`) before running again",
      };
    default:
      return null;
  }
}
