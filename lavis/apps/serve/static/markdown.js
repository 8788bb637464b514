"use strict";
// Answers as markdown: paragraphs, line breaks, lists, **bold**, *italic*, `code` and ``` blocks.
// Everything is escaped first and only these tags are made, so an answer can never inject HTML
// (no links either: nothing an answer says becomes something to click).

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function inlineMarkdown(text) {
  return escapeHtml(text)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*(?=[\s.,;:!?)]|$)/g, "$1<em>$2</em>");
}

function renderMarkdown(text) {
  const out = [];
  const blocks = text.split(/```/);
  blocks.forEach((block, i) => {
    if (i % 2 === 1) { out.push(`<pre><code>${escapeHtml(block.replace(/^\w*\n/, ""))}</code></pre>`); return; }
    for (const para of block.split(/\n\s*\n/)) {
      const lines = para.split("\n").filter((l) => l.trim());
      if (!lines.length) continue;
      if (lines.every((l) => /^\s*([-*•]|\d+[.)])\s+/.test(l))) {
        const tag = /^\s*\d/.test(lines[0]) ? "ol" : "ul";
        out.push(`<${tag}>${lines.map((l) => `<li>${inlineMarkdown(l.replace(/^\s*([-*•]|\d+[.)])\s+/, ""))}</li>`).join("")}</${tag}>`);
      } else {
        out.push(`<p>${lines.map(inlineMarkdown).join("<br>")}</p>`);
      }
    }
  });
  return out.join("");
}
