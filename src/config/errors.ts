// Config problems are reported all at once, each pinned to file:line:column, so
// an operator can fix a file in one pass. Not an EdgeError: clients never see these.

export interface ConfigIssue {
  file: string; // as given to the loader ('<config>' for in-memory text)
  line: number; // 1-based; 0 when the file could not be read at all
  column: number; // 1-based; 0 when the file could not be read at all
  key: string; // 'server.domain', 'programs.local[1].hash'; '' for syntax/read errors
  message: string;
}

/** `file:line:column: key: message`, dropping the parts an issue doesn't have. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file;
  return issue.key ? `${where}: ${issue.key}: ${issue.message}` : `${where}: ${issue.message}`;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: ConfigIssue[];

  constructor(issues: ConfigIssue[]) {
    const first = issues[0];
    const summary = first ? formatIssue(first) : 'invalid configuration';
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    super(`${summary}${more}`);
    this.issues = issues;
  }

  /** One line per issue, for terminals and logs. */
  format(): string {
    return this.issues.map(formatIssue).join('\n');
  }
}
