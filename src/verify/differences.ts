// What differs between two copies of a document, at its top level, for the report: which fields
// hold other values or other types, which are on one side only, or, when none, the order.

import { sameValue, topLevelElements, typeName } from '../bson/raw.ts';
import { TAG_FIELD } from '../replicate/tag.ts';

/** A top-level field that differs; a type is null where the side lacks the field. */
export interface FieldDifference {
  name: string;
  source: string | null;
  destination: string | null;
}

export interface DocumentDifference {
  fields: FieldDifference[];
  /** The same fields with the same values, in another order. */
  fieldOrder: boolean;
}

export function documentDifference(source: Uint8Array, destination: Uint8Array): DocumentDifference {
  const elements = (bytes: Uint8Array) => topLevelElements(bytes).filter((e) => e.name !== TAG_FIELD);
  const s = elements(source);
  const d = elements(destination);
  const byName = new Map(d.map((e) => [e.name, e]));
  const fields: FieldDifference[] = [];
  for (const element of s) {
    const other = byName.get(element.name);
    if (!other) fields.push({ name: element.name, source: typeName(element.type), destination: null });
    else if (!sameValue(source, element, destination, other)) fields.push({ name: element.name, source: typeName(element.type), destination: typeName(other.type) });
  }
  const names = new Set(s.map((e) => e.name));
  for (const element of d) if (!names.has(element.name)) fields.push({ name: element.name, source: null, destination: typeName(element.type) });
  return { fields, fieldOrder: fields.length === 0 };
}
