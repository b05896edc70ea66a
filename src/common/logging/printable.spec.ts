import { printableForLog, quotedForLog } from './printable';

describe('a client-chosen value as a log line carries it', () => {
  it('escapes C1 controls, DEL, C0 controls and every other non-ASCII character, and keeps printable ASCII', () => {
    expect(quotedForLog('https://a.example\x9b[2J\x85\x7f\x00\n')).toBe(
      '"https://a.example\\u009b[2J\\u0085\\u007f\\u0000\\n"',
    );
    expect(quotedForLog('é\u2028😀')).toBe('"\\u00e9\\u2028\\ud83d\\ude00"');
    // still the JSON string of the same value
    const value = 'x"\\\x9b\ud800y';
    expect(JSON.parse(quotedForLog(value))).toBe(value);
    expect(printableForLog('2001:db8::1\x9b')).toBe('2001:db8::1\\u009b');
    expect(printableForLog('203.0.113.7')).toBe('203.0.113.7');
  });
});
