import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { FieldError } from '../errors/domain-error';
import { RequestValidationError } from '../errors/problem-details.filter';
import { findControlCharacters } from './control-characters';

function flattenValidationErrors(errors: ValidationError[], parent = ''): FieldError[] {
  const out: FieldError[] = [];
  for (const error of errors) {
    const field = parent ? `${parent}.${error.property}` : error.property;
    for (const message of Object.values(error.constraints ?? {})) {
      out.push({ field, message });
    }
    if (error.children?.length) out.push(...flattenValidationErrors(error.children, field));
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
    if (metadata.type === 'body' || metadata.type === 'query' || metadata.type === 'param') {
      const path = findControlCharacters(value);
      if (path !== null) {
        const field = [metadata.data, path].filter(Boolean).join('.') || metadata.type;
        throw new RequestValidationError([
          { field, message: `${field} must not contain control characters` },
        ]);
      }
    }
    return super.transform(value, metadata);
  }
}

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
