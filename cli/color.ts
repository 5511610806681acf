// Colour and terminal control, decided once per stream for every command, table, progress bar and message.
//
// Colour only on a terminal: a pipe, a file or a log gets plain text, whatever the CI variables say.
// FORCE_COLOR and NO_COLOR as the ecosystem reads them (force-color.org, no-color.org, Node's own
// tty.getColorDepth): FORCE_COLOR, when set and not empty, turns colour on even into a pipe, except "0" and
// "false", which turn it off; otherwise NO_COLOR, when set and not empty, turns it off; so does TERM=dumb.
// picocolors' own default would also colour under CI and into a pipe when the other stream is a terminal,
// and cli-table3 colours borders through @colors/colors, which never looks at the stream: nothing here
// uses either default.
import Table from "cli-table3";
import pc from "picocolors";

export type Colors = ReturnType<typeof pc.createColors>;

type Env = Readonly<Record<string, string | undefined>>;

/** Whether text written to `stream` may carry colour (ANSI escape codes). */
export function wantsColor(stream: { isTTY?: boolean }, env: Env = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force) return force !== "0" && force.toLowerCase() !== "false";
  if (env.NO_COLOR) return false;
  if (env.TERM === "dumb") return false;
  return stream.isTTY === true;
}

/**
 * Whether a progress bar may be drawn on `stream`: it moves the cursor and clears lines, which only a
 * terminal (not a dumb one) understands. FORCE_COLOR does not put one into a log; NO_COLOR leaves it
 * uncoloured.
 */
export function wantsProgress(stream: { isTTY?: boolean } = process.stderr, env: Env = process.env): boolean {
  return stream.isTTY === true && env.TERM !== "dumb";
}

/** Colours for what goes to standard output: reports and tables. */
export const out: Colors = pc.createColors(wantsColor(process.stdout));
/** Colours for what goes to standard error: messages, errors, progress. */
export const err: Colors = pc.createColors(wantsColor(process.stderr));

// cli-table3's box-drawing characters (U+2500 to U+257F).
const BORDER = /[\u2500-\u257f]+/g;

/**
 * A table for standard output. cli-table3 styles nothing itself (its `style` would colour through
 * @colors/colors, into pipes too); its borders are grey when standard output takes colour.
 */
export function table(options: Table.TableConstructorOptions = {}): Table.Table {
  const t = new Table({ ...options, style: { ...options.style, head: [], border: [] } });
  if (out.isColorSupported) {
    const plain = t.toString.bind(t);
    t.toString = () => plain().replace(BORDER, (run) => out.gray(run));
  }
  return t;
}
