import { describeOptions } from './describe.js'

/** Every option of the config as a Markdown table, generated from the schema (the README embeds it). */
export function optionsTableMarkdown (): string {
  const rows = describeOptions().map((o) => {
    const def = o.default === undefined ? '' : `\`${JSON.stringify(o.default)}\``
    return `| \`${o.path}\` | ${o.type} | ${def} | ${o.description.replace(/\|/g, '\\|')} |`
  })
  return ['| option | type | default | description |', '| --- | --- | --- | --- |', ...rows].join('\n')
}
