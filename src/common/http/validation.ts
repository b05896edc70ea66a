import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { FieldError } from '../errors/domain-error';
import { RequestValidationError } from '../errors/problem-details.filter';
import { findRefusedInput, shownName } from './control-characters';

/** At most this many field errors are listed (a body of thousands of bad items lists the first). */
const MAX_FIELD_ERRORS = 50;

/**
 * The 400 for query parameters a route does not accept, listing the first MAX_FIELD_ERRORS: a
 * 16 KiB query of thousands of one-letter names would otherwise answer ~300 KiB (also on the
 * unthrottled health routes).
 */
export function unknownQueryParameters(names: string[]): RequestValidationError {
  return new RequestValidationError(
    names.slice(0, MAX_FIELD_ERRORS).map((name) => {
      const field = shownName(name);
      return { field, message: `query parameter ${field} should not exist` };
    }),
  );
}

/** The field errors of a validation, depth first, at most MAX_FIELD_ERRORS (iterative: no recursion). */
function flattenValidationErrors(errors: ValidationError[]): FieldError[] {
  const out: FieldError[] = [];
  const stack: [ValidationError, string][] = errors
    .map((e): [ValidationError, string] => [e, ''])
    .reverse();
  while (stack.length > 0 && out.length < MAX_FIELD_ERRORS) {
    const [error, parent] = stack.pop()!;
    const property = shownName(error.property);
    const field = parent ? shownName(`${parent}.${property}`) : property;
    for (const message of Object.values(error.constraints ?? {})) {
      // (class-validator's messages name the property as sent)
      if (out.length < MAX_FIELD_ERRORS)
        out.push({
          field,
          message: error.property ? message.split(error.property).join(property) : message,
        });
    }
    const children = error.children ?? [];
    for (let i = children.length - 1; i >= 0; i--) stack.push([children[i], field]);
  }
  return out;
}

/**
 * The global pipe: whitelist + forbidNonWhitelisted + transform; errors list every field.
 * Before any DTO rule, one rule for every body, query and path parameter of every route: no
 * string (nor property name) may hold a control character (see control-characters.ts) — so a
 * NUL never reaches PostgreSQL, whatever the DTO forgot.
 */
class EdgeValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // a body of `null` is not a left-out body (which may mean "all", e.g. the whole cart or a full
    // refund): the pipe would turn it into {} — nor is a string, a number or an array
    if (
      metadata.type === 'body' &&
      !metadata.data &&
      value !== undefined &&
      !isPlainObject(value)
    ) {
      throw new RequestValidationError([{ field: 'body', message: 'body must be a JSON object' }]);
    }
    if (metadata.type === 'body' || metadata.type === 'query' || metadata.type === 'param') {
      const refused = findRefusedInput(value);
      if (refused !== null) {
        const field = shownName(
          [metadata.data, refused.path].filter(Boolean).join('.') || metadata.type,
        );
        throw new RequestValidationError([
          {
            field,
            message:
              refused.reason === 'control-characters'
                ? `${field} must not contain control characters or unpaired surrogates`
                : `property ${field} should not exist`,
          },
        ]);
      }
    }
    return super.transform(value, metadata);
  }
}

const isPlainObject = (value: unknown): boolean =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export function createValidationPipe(): ValidationPipe {
  return new EdgeValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => new RequestValidationError(flattenValidationErrors(errors)),
  });
}
