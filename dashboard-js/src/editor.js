/* The rules page's editor: CodeMirror 6 with line numbers, YAML highlighting and
 * the server's problems marked on their lines (a gutter marker, the line
 * highlighted, the message after its text).
 *
 * dashboard.js drives it through window.KairosEditor.mount(host, options); it
 * keeps a plain textarea when this file is missing.
 *
 * The dashboard's Content-Security-Policy allows no inline style, and CodeMirror
 * puts its styles in a <style> element when it lives in the document. In a
 * shadow root it uses a constructed stylesheet (adoptedStyleSheets) instead,
 * which style-src does not govern, so the editor lives in one: no nonce, no
 * 'unsafe-inline'.
 */
import { EditorState, RangeSet, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration, EditorView, GutterMarker, WidgetType, drawSelection, gutter, highlightActiveLine,
  highlightActiveLineGutter, highlightSpecialChars, keymap, lineNumbers,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { defaultHighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from "@codemirror/language";
import { yaml } from "@codemirror/lang-yaml";

/* ---- the server's problems, on their lines -------------------------------- */

// [{line, message}]: what the last check said, replacing what was shown before.
const setProblems = StateEffect.define();

class ProblemMarker extends GutterMarker {
  constructor(message) {
    super();
    this.message = message;
  }
  eq(other) {
    return other.message === this.message;
  }
  toDOM() {
    const mark = document.createElement("span");
    mark.className = this.message ? "cm-problem-marker" : "cm-problem-spacer"; // the spacer sets the gutter's width
    mark.textContent = "!";
    if (this.message) mark.title = this.message; // the message on hover
    return mark;
  }
}

// The message after the line's text. Not a block row under the line: typing at the
// end of a line with a block widget below it lost the line break in Chromium.
class ProblemMessage extends WidgetType {
  constructor(message) {
    super();
    this.message = message;
  }
  eq(other) {
    return other.message === this.message;
  }
  toDOM() {
    const note = document.createElement("span");
    note.className = "cm-problem-message";
    note.textContent = this.message;
    return note;
  }
}

// Problems a line has, joined: a line can break two rules of the format at once.
function byLine(doc, problems) {
  const lines = new Map();
  for (const p of problems) {
    if (!Number.isInteger(p.line) || p.line < 1 || p.line > doc.lines) continue;
    lines.set(p.line, [...(lines.get(p.line) || []), p.message]);
  }
  return [...lines.entries()].sort((a, b) => a[0] - b[0]);
}

function build(doc, problems) {
  const decos = [];
  const markers = [];
  for (const [n, messages] of byLine(doc, problems)) {
    const line = doc.line(n);
    const message = messages.join("\n");
    decos.push(Decoration.line({ class: "cm-problem-line", attributes: { "data-problem": message } }).range(line.from));
    decos.push(Decoration.widget({ widget: new ProblemMessage(message), side: 1 }).range(line.to));
    markers.push(new ProblemMarker(message).range(line.from));
  }
  return { decos: Decoration.set(decos), markers: RangeSet.of(markers), count: problems.length };
}

// Kept in step with edits until the next check answers: the marks stay on the
// text they were about rather than on a line number that has moved.
const problemsField = StateField.define({
  create: () => ({ decos: Decoration.none, markers: RangeSet.empty, count: 0 }),
  update(value, tr) {
    for (const e of tr.effects) if (e.is(setProblems)) return build(tr.state.doc, e.value);
    return tr.docChanged ? { ...value, decos: value.decos.map(tr.changes), markers: value.markers.map(tr.changes) } : value;
  },
  // Block widgets (the message row) must come from a state field, not a view plugin.
  provide: (f) => EditorView.decorations.from(f, (v) => v.decos),
});

const problemGutter = gutter({
  class: "cm-problem-gutter",
  markers: (view) => view.state.field(problemsField).markers,
  initialSpacer: () => new ProblemMarker(""),
});

/* ---- looks: the dashboard's colours (dashboard.css does not reach a shadow root) -- */

const MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
const theme = EditorView.theme({
  "&": { height: "clamp(20rem, 62vh, 44rem)", border: "1px solid #e2e5ea", borderRadius: "6px", fontSize: "0.82rem", background: "#fff" },
  "&.cm-focused": { outline: "2px solid #2f5bd3", outlineOffset: "1px" },
  ".cm-scroller": { fontFamily: MONO, lineHeight: "1.45", overflow: "auto" },
  ".cm-gutters": { background: "#f8fafc", color: "#667085", borderRight: "1px solid #e2e5ea" },
  ".cm-activeLine": { background: "#f5f7ff" },
  ".cm-activeLineGutter": { background: "#eef2ff", color: "#1d2430" },
  ".cm-problem-gutter .cm-gutterElement": { padding: "0 3px 0 4px" },
  ".cm-problem-marker, .cm-problem-spacer": {
    display: "inline-block", width: "1.1em", height: "1.1em", lineHeight: "1.1em", borderRadius: "50%",
    background: "#c23b3b", color: "#fff", fontWeight: "700", textAlign: "center", fontSize: "0.85em", cursor: "help",
  },
  ".cm-problem-line, .cm-problem-line.cm-activeLine": { background: "#fdecec", boxShadow: "inset 3px 0 0 #c23b3b" },
  ".cm-problem-message": {
    marginLeft: "2.5em", padding: "0 6px", borderRadius: "3px", background: "#c23b3b", color: "#fff",
    fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", fontSize: "0.78rem",
  },
});

/* ---- the editor dashboard.js talks to ------------------------------------------- */

/**
 * An editor in `host` (an element of its own: it gets a shadow root).
 * options: {label: the accessible name, onChange(text)}.
 * Returns {text(), setText(text), setProblems([{line, message}]), goTo(line), focus()}.
 */
function mount(host, options = {}) {
  const onChange = options.onChange || (() => {});
  const root = host.shadowRoot || host.attachShadow({ mode: "open" });
  const extensions = [
    lineNumbers(),
    problemGutter,
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    indentOnInput(),
    highlightActiveLine(),
    syntaxHighlighting(defaultHighlightStyle),
    EditorState.tabSize.of(2),
    indentUnit.of("  "), // YAML refuses tabs for indentation
    // Tab indents; Escape then Tab leaves the editor (CodeMirror's own rule for keyboard users).
    keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
    yaml(),
    problemsField,
    theme,
    EditorView.contentAttributes.of({ "aria-label": options.label || "Rules file (YAML)" }),
    EditorView.contentAttributes.compute([problemsField], (state) => (state.field(problemsField).count ? { "aria-invalid": "true" } : {})),
    EditorView.updateListener.of((u) => {
      if (u.docChanged) onChange(u.state.doc.toString());
    }),
  ];
  const view = new EditorView({ root, parent: root, state: EditorState.create({ doc: "", extensions }) });

  return {
    view,
    text: () => view.state.doc.toString(),
    /** Replace the whole document (what the server has in force): no undo back past it. */
    setText(text) {
      view.setState(EditorState.create({ doc: text, extensions }));
    },
    setProblems(problems) {
      view.dispatch({ effects: setProblems.of(problems || []) });
    },
    /** Put the cursor at the start of line `n`, in view, and the focus in the editor. */
    goTo(n) {
      const doc = view.state.doc;
      const line = doc.line(Math.min(Math.max(1, n), doc.lines));
      view.dispatch({ selection: { anchor: line.from }, effects: EditorView.scrollIntoView(line.from, { y: "center" }) });
      view.focus();
    },
    focus: () => view.focus(),
  };
}

window.KairosEditor = { mount };
