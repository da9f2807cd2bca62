// @drift/react: Drift's screen kit for React. `useDriftFlow` follows one workflow and answers
// its screens; `<DriftScreen>` draws the current one with the kit's widgets or a registry's.
// Import `@drift/react/drift.css` for the default look, or style the class names yourself.

export { useDriftFlow } from "./useDriftFlow.js";
export type { DriftFlow, FlowMode, FlowOptions, FlowStatus, FlowTarget } from "./useDriftFlow.js";
export { DriftScreen } from "./DriftScreen.js";
export type { DriftScreenProps } from "./DriftScreen.js";
export {
  Buttons,
  Complete,
  DatePicker,
  Dropdown,
  FreeText,
  Label,
  StaticText,
  Unknown,
  controlProps,
  defaultWidgets,
  widgetFor,
} from "./widgets.js";
export type { WidgetProps, WidgetRegistry } from "./widgets.js";
export type { ScreenModel, WidgetModel, Choice, NodeAction } from "@drift/client/screen";
