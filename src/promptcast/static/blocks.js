// Where a streaming Markdown text can be cut so that the part before the cut
// renders the same now as it will when the text is complete. Pure.

const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/**
 * The end of the last complete Markdown block in `text` at or after `from`:
 * just past a blank line that is outside a code fence and is followed by a
 * line that has started and is not indented (so it does not continue a list
 * item or indented code). Returns `from` when there is none.
 */
export function stableBoundary(text, from) {
  let boundary = from;
  let fence = null;
  let pos = from;
  let blankAt = -1; // the end of the last blank line seen, outside fences
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    const complete = end !== -1;
    if (!complete) end = text.length;
    const line = text.slice(pos, end);
    if (blankAt !== -1 && line.length > 0 && !/^[ \t]/.test(line)) boundary = blankAt;
    if (!complete) break;
    const open = FENCE.exec(line);
    if (fence) {
      if (open && open[1][0] === fence[0] && open[1].length >= fence.length && line.trim() === open[1]) fence = null;
      blankAt = -1;
    } else if (open) {
      fence = open[1];
      blankAt = -1;
    } else {
      blankAt = line.trim() === '' ? end + 1 : -1;
    }
    pos = end + 1;
  }
  return boundary;
}
