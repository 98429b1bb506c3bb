// Plain-text tables for terminals: aligned columns, two spaces apart, no borders.

export interface Column {
  header: string;
  /** Numbers read best right-aligned. */
  align?: 'left' | 'right';
}

/** Renders a header line and one line per row, newline-terminated, without trailing spaces. */
export function renderTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const cells = rows.map((row) => columns.map((_, i) => printable(row[i] ?? '')));
  const widths = columns.map((column, i) => Math.max(width(column.header), ...cells.map((row) => width(row[i] ?? ''))));
  const line = (values: readonly string[]) =>
    columns
      .map((column, i) => pad(values[i] ?? '', widths[i] ?? 0, column.align ?? 'left'))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/**
 * Replaces control characters: names and issuers come from configuration and
 * certificates, and must not be able to send escape sequences to a terminal.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** Width in code points (good enough for the ASCII-heavy content shown here). */
function width(text: string): number {
  return [...text].length;
}

function pad(text: string, size: number, align: 'left' | 'right'): string {
  const fill = ' '.repeat(Math.max(0, size - width(text)));
  return align === 'right' ? fill + text : text + fill;
}
