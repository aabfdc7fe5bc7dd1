// Numbers, shapes and nested arrays as the page writes them.

export function product(shape) {
  return shape.reduce((acc, n) => acc * (n ?? 1), 1);
}

export function fmt(value, digits = 3) {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) return value.toExponential(2);
  return value.toFixed(digits);
}

export function percent(p) {
  return `${(p * 100).toFixed(1)} %`;
}

export function shapeText(shape) {
  return `(${shape.map((n) => (n === null ? "batch" : n)).join(" × ")})`;
}

export function flatten(values) {
  return Array.isArray(values) ? values.flat(Infinity) : [values];
}
