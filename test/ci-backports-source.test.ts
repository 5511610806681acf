// .ci/backports-source, which .ci/run uses to add the backports suite (for Mesa 25) on the mirror the
// machine's apt sources already use: run on apt source files written here, in both of apt's forms.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

/** Runs the script on files with these names and contents. */
function derive(codename: string, files: Record<string, string>) {
  const paths = Object.entries(files).map(([name, text]) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  });
  const r = spawnSync("bash", [".ci/backports-source", codename, ...paths], { encoding: "utf8" });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const DEB822 = `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

describe(".ci/backports-source", () => {
  it("deb822: the mirror and keyring of the source that has the release's own suite", () => {
    const r = derive("bookworm", { "debian.sources": DEB822 });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(
      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\n" +
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    );
  });

  it("one-line form: options, deb-src and comments skipped, the signed-by option kept", () => {
    const r = derive("bookworm", {
      "sources.list": [
        "# deb http://commented.example/debian bookworm main",
        "deb-src http://src.example/debian bookworm main",
        "deb http://other.example/debian-security bookworm-security main",
        "deb [ arch=amd64 signed-by=/etc/apt/keyrings/k.gpg ] http://mirror.example/debian/ bookworm main # note",
      ].join("\n"),
    });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(
      "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm-backports\nComponents: main\n" +
        "Signed-By: /etc/apt/keyrings/k.gpg\n",
    );
  });

  it("deb822: a disabled stanza skipped; URIs and Suites continued on following lines; a key block not copied", () => {
    const r = derive("trixie", {
      "x.sources": `Types: deb
URIs: http://off.example/debian
Suites: trixie
Components: main
Enabled: no

Types: deb-src deb
URIs: http://first.example/debian
 http://second.example/debian
Suites: trixie-updates
 trixie
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
`,
    });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(
      "Types: deb\nURIs: http://first.example/debian\nSuites: trixie-backports\nComponents: main\n",
    );
  });

  it("nothing to add where a backports source is already configured", () => {
    const r = derive("bookworm", {
      "debian.sources": DEB822,
      "backports.list": "deb http://mirror.example/debian bookworm-backports main\n",
    });
    expect(r).toEqual({ code: 0, out: "", err: "" });
  });

  it("no source of the release: exit 1, saying so", () => {
    const r = derive("trixie", { "debian.sources": DEB822 });
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toMatch(/^backports-source: no apt source of suite trixie in: .*debian\.sources\n$/);
  });
});
