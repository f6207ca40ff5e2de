// The smallest webpack loader for TypeScript: strips types with the compiler's transpileModule
// (type checking is tsc's job). A real app would use ts-loader or babel; webtune needs neither.
const ts = require('typescript');

module.exports = function transpile(source) {
  return ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
};
