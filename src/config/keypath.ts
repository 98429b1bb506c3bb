// Key paths name a place in the document: `server.https_listen[1]`,
// `programs.local[2].hash`. The schema reports issues by path and the locator
// maps the same paths to source positions, so both must format them identically.

export type Segment = string | number;
export type KeyPath = readonly Segment[];

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

export function formatPath(path: KeyPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') {
      out += `[${segment}]`;
    } else {
      const text = BARE_KEY.test(segment) ? segment : JSON.stringify(segment);
      out += out === '' ? text : `.${text}`;
    }
  }
  return out;
}
