// The digit canvas: draw one digit with the mouse, a pen or a finger (pointer events cover
// touch too). The drawing goes out as a PNG file once the pen lifts.
import { el, debounce } from "./dom.js";

const SIZE = 280;

// A white square canvas with id `id`; `onDrawing(file)` gets each finished drawing.
export function drawingPad(id, onDrawing) {
  const size = SIZE;
  const canvas = el("canvas", {
    class: "draw",
    id,
    width: size,
    height: size,
    role: "img",
    "aria-label": "Drawing area: draw one digit with the mouse, a pen or a finger",
  });
  const ctx = canvas.getContext("2d");
  let hasInk = false;
  let drawing = null;
  const clear = () => {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    hasInk = false;
  };
  clear();
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * size) / box.width,
      ((event.clientY - box.top) * size) / box.height,
    ];
  };
  const submitDrawing = debounce(() => {
    if (!hasInk) return;
    canvas.toBlob(
      (blob) => onDrawing(new File([blob], "drawing.png", { type: "image/png" })),
      "image/png",
    );
  }, 350);
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = { id: event.pointerId, last: point(event) };
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = 20;
    ctx.strokeStyle = "#111";
    ctx.fillStyle = "#111";
    const [x, y] = drawing.last;
    ctx.beginPath();
    ctx.arc(x, y, 10, 0, Math.PI * 2);
    ctx.fill();
    hasInk = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing || event.pointerId !== drawing.id) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const next = point(e);
      ctx.beginPath();
      ctx.moveTo(...drawing.last);
      ctx.lineTo(...next);
      ctx.stroke();
      drawing.last = next;
    }
  });
  const end = (event) => {
    if (!drawing || event.pointerId !== drawing.id) return;
    drawing = null;
    submitDrawing();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  return { canvas, clear };
}
