// Compiled by tests/api/test_generated_client.py against types openapi-typescript generated from the live document.
import createClient from "openapi-fetch";
import type { paths } from "./schema";

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:8000" });

export async function detectJson(image: string): Promise<number[]> {
  const { data, error } = await client.POST("/v1/detect", {
    body: { image, thresholds: [0.6, 0.7, 0.8], max_faces: 1 },
  });
  if (error) throw new Error(error.error.code);
  if (typeof data === "string") throw new Error("asked for JSON, got the image");
  return data.faces[0].box;
}

export async function verifyForm(a: Blob, b: Blob): Promise<boolean> {
  const { data, error } = await client.POST("/v1/verify", {
    body: { image_a: "", image_b: "", face: "best_match" },
    bodySerializer: () => {
      const form = new FormData();
      form.append("image_a", a);
      form.append("image_b", b);
      form.append("face", "best_match");
      return form;
    },
  });
  if (error) throw new Error(`${error.error.code}: ${error.error.message}`);
  return data.verified;
}

// The image answer's bytes: format binary is typed `string`; parseAs picks the reader.
export async function stylize(image: Blob): Promise<unknown> {
  const { data, error } = await client.POST("/v1/stylize", {
    body: { image: "", style: "3", format: "jpeg" },
    bodySerializer: () => {
      const form = new FormData();
      form.append("image", image);
      form.append("style", "3");
      return form;
    },
    parseAs: "blob",
  });
  if (error) throw new Error(error.error.code);
  return data;
}
