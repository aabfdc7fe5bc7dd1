// Colours: a viridis-like ramp for values >= 0, blue-white-red for signed values.

const RAMP = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

function sequential(t) {
  const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  return RAMP[i].map((c, k) => Math.round(c + (RAMP[i + 1][k] - c) * f));
}

function diverging(t) {
  const x = Math.min(1, Math.max(-1, t));
  const white = [247, 247, 247];
  const end = x < 0 ? [33, 102, 172] : [178, 24, 43];
  const f = Math.abs(x);
  return white.map((c, k) => Math.round(c + (end[k] - c) * f));
}

// A colour scale for a set of values: sequential from 0 when none is negative, else diverging.
export function colourScale(min, max) {
  if (min >= 0) {
    const top = max > 0 ? max : 1;
    return { signed: false, colour: (v) => sequential(v / top) };
  }
  const top = Math.max(Math.abs(min), Math.abs(max)) || 1;
  return { signed: true, colour: (v) => diverging(v / top) };
}

export function rgb([r, g, b]) {
  return `rgb(${r} ${g} ${b})`;
}

// Text colour that stays readable on a cell coloured `c`.
export function inkOn([r, g, b]) {
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#fff";
}
