// Headless Chromium check of the demo page: load it, upload a photo, wait for the result and
// measure what the two WebGL canvases drew. Prints one JSON line; exits 1 on failure.
//
//   node web/tests/browser.mjs --url http://127.0.0.1:8000/ --image photo.png \
//        --screenshot out.png [--threshold 0.1] [--timeout 120] [--chromium /usr/bin/chromium]
//        [--webcam]   then stream Chromium's fake camera (getUserMedia) until 2 frames came back
//        [--fov-stable]  with --webcam: stream on until the FOV state says "stable", then 2 more frames
//   node web/tests/browser.mjs --url URL --page-only   only load the page: health line and model notice banner
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    image: { type: 'string' },
    screenshot: { type: 'string' },
    threshold: { type: 'string', default: '0.5' },
    timeout: { type: 'string', default: '120' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    webcam: { type: 'boolean', default: false },
    'fov-stable': { type: 'boolean', default: false },
    'page-only': { type: 'boolean', default: false },
  },
});
if (!args.url || (!args.image && !args['page-only'])) {
  console.error('usage: browser.mjs --url URL (--image FILE | --page-only) [--screenshot FILE] [--threshold T]');
  process.exit(2);
}
const timeoutMs = Number(args.timeout) * 1000;

// Pixels of a WebGL canvas that differ from its clear colour (transparent for the overlay).
function countDrawn(testId) {
  const canvas = document.querySelector(`[data-testid="${testId}"]`);
  if (!canvas || !canvas.width || !canvas.height) return { width: 0, height: 0, drawn: 0, webgl: false };
  const webgl = !!(canvas.getContext('webgl2') || canvas.getContext('webgl'));
  const copy = document.createElement('canvas');
  copy.width = canvas.width;
  copy.height = canvas.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const { data } = ctx.getImageData(0, 0, copy.width, copy.height);
  const [r0, g0, b0, a0] = [data[0], data[1], data[2], data[3]];
  let drawn = 0;
  let colored = 0;
  for (let i = 0; i < data.length; i += 4) {
    const a = data[i + 3];
    if (testId === 'overlay-canvas' ? a > 0 : Math.abs(data[i] - r0) + Math.abs(data[i + 1] - g0) + Math.abs(data[i + 2] - b0) + Math.abs(a - a0) > 12) {
      drawn += 1;
      const spread = Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]);
      if (spread > 40) colored += 1; // shaded palette colours, not grey lines or background
    }
  }
  return { width: copy.width, height: copy.height, drawn, colored, webgl };
}

async function fovState(page) {
  const element = await page.$('[data-testid="fov-state"]');
  return element ? element.textContent() : null;
}

const profile = mkdtempSync(join(tmpdir(), 'lighthmr-chromium-'));
// A fresh profile each run (Playwright passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  viewport: { width: 1400, height: 900 },
  permissions: ['camera'],
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--use-gl=angle',
    '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader',
    '--disable-background-networking',
    '--disable-quic',
    '--no-first-run',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-device-for-media-stream', // a synthetic camera for getUserMedia
    '--use-fake-ui-for-media-stream',
  ],
});
const report = { ok: false, console: [] };
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => {
    if (['error', 'warning'].includes(msg.type())) report.console.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (error) => report.console.push(`pageerror: ${error.message}`));
  const url = new URL(args.url);
  url.searchParams.set('threshold', args.threshold);
  await page.goto(url.toString(), { waitUntil: 'load', timeout: timeoutMs });
  await page.waitForFunction(
    () => document.querySelector('[data-testid="health"]')?.textContent.match(/ on |error/),
    null,
    { timeout: timeoutMs },
  );
  report.health = await page.textContent('[data-testid="health"]');
  // The model's notice banner (the synthetic demo model says what it is), null when the page shows none.
  const notice = await page.$('[data-testid="model-notice"]');
  report.notice = notice && (await notice.isVisible()) ? await notice.textContent() : null;
  report.fovAuto = await page.isChecked('[data-testid="fov-auto"]');
  if (args['page-only']) {
    if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
    report.ok = true;
  } else {
    const started = Date.now();
    await page.setInputFiles('[data-testid="file-input"]', args.image);
    await page.waitForFunction(
      () => {
        const count = document.querySelector('[data-testid="people-count"]')?.textContent;
        const status = document.querySelector('[data-testid="status"]');
        return (count && count !== '-') || (status && status.classList.contains('error'));
      },
      null,
      { timeout: timeoutMs },
    );
    // Let the texture load and both views render.
    await page.waitForTimeout(500);
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    report.seconds = (Date.now() - started) / 1000;
    report.count = await page.textContent('[data-testid="people-count"]');
    report.status = await page.textContent('[data-testid="status"]');
    report.latency = await page.textContent('[data-testid="latency"]');
    report.fovState = await fovState(page);
    report.overlay = await page.evaluate(countDrawn, 'overlay-canvas');
    report.scene = await page.evaluate(countDrawn, 'scene-canvas');
    if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
    report.ok = /^\d+$/.test(report.count ?? '');
    if (args.webcam && report.ok) {
      // Every text the FOV state shows while streaming, in order (each change once).
      await page.evaluate(() => {
        window.fovStates = [];
        setInterval(() => {
          const text = document.querySelector('[data-testid="fov-state"]')?.textContent || '';
          if (text && text !== window.fovStates[window.fovStates.length - 1]) window.fovStates.push(text);
        }, 10);
      });
      await page.click('text=Start webcam');
      await page.waitForFunction(
        () => {
          const frames = Number(document.querySelector('[data-testid="webcam-frames"]')?.textContent || 0);
          const status = document.querySelector('[data-testid="status"]');
          return frames >= 2 || (status && status.classList.contains('error'));
        },
        null,
        { timeout: timeoutMs },
      );
      if (args['fov-stable']) {
        await page.waitForFunction(
          () => {
            const state = document.querySelector('[data-testid="fov-state"]')?.textContent || '';
            const status = document.querySelector('[data-testid="status"]');
            return state.includes('stable)') || (status && status.classList.contains('error'));
          },
          null,
          { timeout: timeoutMs },
        );
        const settledAt = Number(await page.textContent('[data-testid="webcam-frames"]'));
        await page.waitForFunction(
          (at) => Number(document.querySelector('[data-testid="webcam-frames"]')?.textContent || 0) >= at + 2,
          settledAt,
          { timeout: timeoutMs },
        );
      }
      report.webcamFrames = Number(await page.textContent('[data-testid="webcam-frames"]'));
      report.webcamFovState = await fovState(page);
      report.webcamFovStates = await page.evaluate(() => window.fovStates);
      report.webcamStatus = await page.textContent('[data-testid="status"]');
      report.webcamCount = await page.textContent('[data-testid="people-count"]');
      if (args.screenshot) await page.screenshot({ path: args.screenshot.replace(/(\.png)?$/, '-webcam.png'), fullPage: true });
      await page.click('text=Stop webcam');
      report.ok = report.webcamFrames >= 2 && (!args['fov-stable'] || /stable\)/.test(report.webcamFovState || ''));
    }
  }
} catch (error) {
  report.error = String(error && error.message ? error.message : error);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
