import { IsInt } from 'class-validator';
import { RequestValidationError } from '../errors/problem-details.filter';
import { createValidationPipe, unknownQueryParameters } from './validation';

class Quantity {
  @IsInt() quantity!: number;
}

/** The field errors a body gets from the global pipe (it must refuse it). */
async function refusal(body: unknown) {
  const pipe = createValidationPipe();
  const err = await pipe
    .transform(body, { type: 'body', metatype: Quantity, data: undefined })
    .then(
      () => null,
      (e: unknown) => e,
    );
  expect(err).toBeInstanceOf(RequestValidationError);
  const answer = JSON.stringify((err as RequestValidationError).options);
  return { errors: JSON.parse(answer).errors as { field: string; message: string }[], answer };
}

describe('the validation pipe repeats what a client named, bounded and clean', () => {
  it('a huge unknown property: named by its first 64 characters, in the field and the message', async () => {
    const name = 'k'.repeat(120_000);
    const { errors, answer } = await refusal({ quantity: 1, [name]: 1 });
    expect(errors).toEqual([
      { field: `${'k'.repeat(64)}…`, message: `property ${'k'.repeat(64)}… should not exist` },
    ]);
    expect(answer.length).toBeLessThan(1_000);
  });

  it.each([['a\u0000b'], ['\ud800'], ['x\udc00y']])(
    'a property name with a control character or a lone surrogate (%j): U+FFFD in its place',
    async (name) => {
      const { errors, answer } = await refusal({ quantity: 1, [name]: 1 });
      expect(errors[0].field).toBe(
        ['\u0000', '\ud800', '\udc00'].reduce((n, c) => n.replaceAll(c, '\ufffd'), name),
      );
      expect(answer).not.toMatch(/\\u0000|\\ud800|\\udc00/i);
    },
  );

  it('a whole emoji at the cut stays whole or goes: never half of it', async () => {
    const { errors } = await refusal({ quantity: 1, [`${'k'.repeat(63)}😀😀`]: 1 });
    expect(errors[0].field).toBe(`${'k'.repeat(63)}…`);
  });

  it('unknown query parameters: each named by its first 64 characters, cleaned', () => {
    const err = unknownQueryParameters(['q'.repeat(16_000), 'a\u0000']);
    expect(JSON.parse(JSON.stringify(err.options)).errors).toEqual([
      {
        field: `${'q'.repeat(64)}…`,
        message: `query parameter ${'q'.repeat(64)}… should not exist`,
      },
      { field: 'a\ufffd', message: 'query parameter a\ufffd should not exist' },
    ]);
  });
});
