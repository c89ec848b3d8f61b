import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..", "..");

/** The documents a user of the repository reads: the READMEs and docs/. */
function documents(): string[] {
  const inFolder = (dir: string, pick: (name: string) => boolean) =>
    existsSync(join(ROOT, dir))
      ? readdirSync(join(ROOT, dir))
          .filter(pick)
          .map((name) => join(ROOT, dir, name))
      : [];
  const readmes = (dir: string) =>
    inFolder(dir, () => true)
      .map((d) => join(d, "README.md"))
      .filter(existsSync);
  return [join(ROOT, "README.md"), ...inFolder("docs", (n) => n.endsWith(".md")), ...readmes("apps"), ...readmes("packages")];
}

/** The text a reader sees as prose: fenced blocks and inline code removed (a link there is an example). */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");

const anchorsOf = (file: string) =>
  new Set(
    [
      ...readFileSync(file, "utf8")
        .replace(/^```[\s\S]*?^```/gm, "")
        .matchAll(/^#{1,6}\s+(.+)$/gm),
    ].map((m) => slug(m[1] ?? "")),
  );

describe("the documentation", () => {
  it("stands alone: every relative link leads to a file of the repository and a heading in it", () => {
    const broken: string[] = [];
    for (const file of documents()) {
      for (const m of prose(readFileSync(file, "utf8")).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1] ?? "";
        if (/^[a-z][a-z+.-]*:/i.test(target)) continue;
        const [path = "", anchor] = target.split("#");
        const linked = path === "" ? file : resolve(dirname(file), path);
        const where = `${relative(ROOT, file)}: ${target}`;
        if (!existsSync(linked)) broken.push(`${where} (no such file)`);
        else if (anchor && linked.endsWith(".md") && !anchorsOf(linked).has(anchor)) broken.push(`${where} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("cites no design document that is not in the repository", () => {
    const citing = documents().filter((file) => readFileSync(file, "utf8").includes("DESIGN.md"));
    expect(citing.map((file) => relative(ROOT, file))).toEqual([]);
  });
});
