// The kit's widgets, one per kind the DSL defines, and the registry that picks one for a
// widget by its tags: a team replaces a kind (its own date picker) or adds a tag the kit does
// not know (`ui.rating`) without forking the screen. Each widget gets its model from the core
// (label, choices, value, error, element ids) and says what changed; the screen does the rest.

import type { ComponentType, ReactNode } from "react";
import type { Choice, WidgetModel } from "@drift/client/screen";

export interface WidgetProps {
  widget: WidgetModel;
  /** Sets the widget's value in the draft (`undefined` clears it). */
  onChange(value: unknown): void;
  /** Answers the screen with this widget set to `value` (a button group's press). */
  onAnswer(value: unknown): void;
  /** Ids of the widget's text and error, for `aria-describedby` on the control. */
  describedBy: string;
  /** A call is in flight: controls that answer wait. */
  disabled: boolean;
}

/** Widgets by tag (`ui.dropdown`, or a tag of your own); the first of a widget's tags found wins. */
export type WidgetRegistry = Readonly<Record<string, ComponentType<WidgetProps>>>;

const cls = (...names: (string | false | undefined)[]) => names.filter(Boolean).join(" ");

/** The label, with a required mark that screen readers skip (the control says `aria-required`). */
export function Label({ widget: w, children }: { widget: WidgetModel; children?: ReactNode }) {
  return (
    <label className="drift-label" htmlFor={w.ids.input} id={w.ids.label}>
      {children ?? w.label}
      {w.required && (
        <span className="drift-required" aria-hidden="true">
          {" *"}
        </span>
      )}
    </label>
  );
}

/** The attributes every input control carries: its id, name, and what describes it. */
export const controlProps = (p: WidgetProps) => ({
  id: p.widget.ids.input,
  name: p.widget.id,
  "aria-describedby": p.describedBy || undefined,
  "aria-required": p.widget.required || undefined,
  "aria-invalid": p.widget.error ? true : undefined,
});

export function StaticText({ widget: w }: WidgetProps) {
  return <p className="drift-text">{w.text || w.label}</p>;
}

export function Complete({ widget: w }: WidgetProps) {
  return (
    <div className="drift-banner" role="status">
      {w.text || w.label}
    </div>
  );
}

/** A choice that was the answer before Back is marked, in words as well as in style. */
const earlierNote = (c: Choice) => (c.earlier ? " (your earlier answer)" : "");

export function Buttons(p: WidgetProps) {
  const w = p.widget;
  return (
    <div
      className="drift-buttons"
      role="group"
      id={w.ids.input}
      tabIndex={-1}
      aria-labelledby={w.ids.label}
      aria-describedby={p.describedBy || undefined}
    >
      {/* A group without a description is named by its id, for screen readers only. */}
      <span className={w.label === w.id ? "drift-visually-hidden" : "drift-label"} id={w.ids.label}>
        {w.label}
      </span>
      {w.choices.map((c) => (
        <button
          key={c.key}
          type="button"
          className={cls("drift-button", c.earlier && "drift-earlier")}
          disabled={p.disabled}
          aria-label={c.earlier ? `${c.label}${earlierNote(c)}` : undefined}
          onClick={() => p.onAnswer(c.value)}
        >
          {c.label}
        </button>
      ))}
    </div>
  );
}

export function Dropdown(p: WidgetProps) {
  const w = p.widget;
  const selected = w.value === undefined ? "" : JSON.stringify(w.value);
  return (
    <>
      <Label widget={w} />
      <select
        {...controlProps(p)}
        className="drift-select"
        value={w.choices.some((c) => c.key === selected) ? selected : ""}
        onChange={(e) => p.onChange(w.choices.find((c) => c.key === e.target.value)?.value)}
      >
        <option value="">— choose —</option>
        {w.choices.map((c) => (
          <option key={c.key} value={c.key}>
            {c.label}
            {earlierNote(c)}
          </option>
        ))}
      </select>
    </>
  );
}

/** A text-like input: its label (or `label`), and the value as text. */
function TextInput({ p, type, label }: { p: WidgetProps; type: "text" | "date"; label?: ReactNode }) {
  const w = p.widget;
  return (
    <>
      <Label widget={w}>{label}</Label>
      <input
        {...controlProps(p)}
        className="drift-input"
        type={type}
        autoComplete="off"
        value={w.value === undefined ? "" : String(w.value)}
        onChange={(e) => p.onChange(e.target.value)}
      />
    </>
  );
}

export const FreeText = (p: WidgetProps) => <TextInput p={p} type="text" />;

export const DatePicker = (p: WidgetProps) => <TextInput p={p} type="date" />;

/** A tag no widget knows: a text field, saying which tag it stands in for. */
export const Unknown = (p: WidgetProps) => (
  <TextInput p={p} type="text" label={`${p.widget.label} (${p.widget.tags.join(", ") || "input"})`} />
);

/** The kit's widgets, by the DSL's tags. */
export const defaultWidgets: WidgetRegistry = {
  "ui.static_text": StaticText,
  "ui.complete": Complete,
  "ui.button": Buttons,
  "ui.dropdown": Dropdown,
  "ui.free_text": FreeText,
  "ui.date_picker": DatePicker,
};

/** The widget for `w`: the registry's for the first of its tags it has, else a text field. */
export function widgetFor(w: WidgetModel, registry: WidgetRegistry): ComponentType<WidgetProps> {
  for (const t of w.tags) {
    const found = registry[t] ?? defaultWidgets[t];
    if (found) return found;
  }
  return Unknown;
}
