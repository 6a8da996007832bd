// `npm run lint`: eslint's recommended rules and eslint-plugin-vue's "recommended" tier (essential +
// strongly recommended + recommended) over src/, which runs in the browser.
import js from '@eslint/js'
import pluginVue from 'eslint-plugin-vue'
import globals from 'globals'

export default [
  js.configs.recommended,
  ...pluginVue.configs['flat/recommended'],
  {
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module', globals: globals.browser },
    rules: {
      // Off: line layout of templates is formatting, not correctness. The templates keep short
      // elements on one line, and reflowing them would add white space to text the browser tests read.
      'vue/max-attributes-per-line': 'off',
      'vue/singleline-html-element-content-newline': 'off',
      // The templates close every empty element, void HTML ones (<input />) included: keep one way.
      'vue/html-self-closing': ['warn', { html: { void: 'always', normal: 'always', component: 'always' } }],
    },
  },
]
