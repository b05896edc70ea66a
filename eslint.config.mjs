import js from '@eslint/js';
import { readdirSync } from 'node:fs';
import tseslint from 'typescript-eslint';

/*
 * Layers (docs/ARCHITECTURE.md, "Layers"): an import never runs from a lower layer up.
 * Every folder and root file of src/ is a name an import can reach; a lower layer may reach
 * only the names it lists. A new feature folder is forbidden to the lower layers by default.
 */
const SRC_NAMES = readdirSync(`${import.meta.dirname}/src`, { withFileTypes: true }).map((e) =>
  e.isDirectory() ? e.name : e.name.replace(/\.ts$/, ''),
);
const ROOTS = ['app.module', 'app.setup', 'main', 'worker.module', 'worker', 'api-cluster'];
const LAYERS = {
  config: [],
  redis: ['config'],
  common: ['config', 'redis'],
  database: ['config', 'common'],
};
const escape = (name) => name.replaceAll('.', '\\.');
/** `../` (any number) then one of `names` as the next path segment: an import of src/<name>. */
const importOf = (names) => `^(\\.\\./)+(${names.map(escape).join('|')})(/|$)`;
const layerRule = (message, names) => ({
  'no-restricted-imports': ['error', { patterns: [{ regex: importOf(names), message }] }],
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'var/**', '*.js', '*.mjs', 'scripts/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-extraneous-class': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
  {
    // Tests and tooling talk to loosely typed JSON bodies; keep the strict rules for src/.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts', '**/*.spec.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // The generated-client contract test: everything typed by openapi.json, no escape hatch
    // (no `as`/`<T>x`, no non-null `!`, no `any`, nothing untyped flowing through).
    files: ['test/client/generated-client.test.ts'],
    rules: {
      '@typescript-eslint/consistent-type-assertions': ['error', { assertionStyle: 'never' }],
      '@typescript-eslint/no-non-null-assertion': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unsafe-assignment': 'error',
      '@typescript-eslint/no-unsafe-member-access': 'error',
      '@typescript-eslint/no-unsafe-argument': 'error',
      '@typescript-eslint/no-unsafe-call': 'error',
      '@typescript-eslint/no-unsafe-return': 'error',
    },
  },
  {
    // the composition roots (app.module.ts, worker.module.ts, app.setup.ts, main.ts, worker.ts)
    // import the features; no feature imports them back
    files: ['src/*/**/*.ts'],
    rules: layerRule('A feature never imports a composition root (docs/ARCHITECTURE.md, Layers).', ROOTS),
  },
  // one block per lower layer: it imports only the layers below it
  ...Object.entries(LAYERS).map(([layer, allowed]) => {
    const below = allowed.length
      ? `only ${allowed.map((l) => `src/${l}/`).join(' and ')}`
      : 'no other folder of src/';
    return {
      files: [`src/${layer}/**/*.ts`],
      rules: layerRule(
        `src/${layer}/ imports ${below} (docs/ARCHITECTURE.md, Layers): move the shared piece down or invert the dependency.`,
        SRC_NAMES.filter((n) => n !== layer && !allowed.includes(n)),
      ),
    };
  }),
);
