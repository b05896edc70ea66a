// How TypeScript is transpiled for jest (jest.config.js) and for running sources directly
// (scripts/ts-register.js): swc with tsc's semantics for tsconfig.json — CommonJS with
// esModuleInterop, ES2022 (class fields by define, as tsc does for that target), legacy
// decorators with their design-type metadata (Nest's injection and validation read it), class
// names kept (Nest and TypeORM use them). No type-check here: `npm run typecheck` does that.
module.exports = {
  swcrc: false,
  jsc: {
    parser: { syntax: 'typescript', decorators: true, dynamicImport: true },
    transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: true },
    target: 'es2022',
    keepClassNames: true,
  },
  module: { type: 'commonjs', noInterop: false, strictMode: true },
};
