// The live view's Worker: the landmark models, the U-Net and every stage of a frame run
// here (liveframe.js LiveSession), so the page's main thread only moves camera frames in
// and fused frames out. A classic worker that loads the engine's ES modules with import():
// LiteRT.js loads its wasm glue with importScripts(), which module workers refuse.
const session = import('./liveframe.js').then(({LiveSession}) => new LiveSession());

self.onmessage = async ({data: msg}) => {
  const answer = await (await session).handle(msg);
  if (!answer) return;
  const {transfer = [], ...data} = answer;
  self.postMessage(data, transfer); // the frame's arrays move to the page, not copied
};
