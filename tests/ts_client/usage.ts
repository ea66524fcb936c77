// Compiled against the generated types: the operations a frontend uses most exist with the
// shapes it relies on (a rename or a lost schema breaks this file, not the frontend).
import type { components, paths } from "./generated/api";

type NumberOut = components["schemas"]["NumberOut"];
type Page = paths["/api/phone-numbers/"]["get"]["responses"]["200"]["content"]["application/json"];
type BulkBody = NonNullable<
  paths["/api/phone-numbers/bulk/"]["post"]["requestBody"]
>["content"]["application/json"];
type FieldErrors = components["schemas"]["ValidationError"];

export const first = (page: Page): NumberOut | undefined => page.results[0];
export const bulk: BulkBody = { project_id: 1, numbers: ["+79161234567", { phone_number: "8 916 123-45-68" }] };
export const errors: FieldErrors = { result_data: ["Nested deeper than 32 levels."] };
