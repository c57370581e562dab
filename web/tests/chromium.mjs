// Launches Debian's headless Chromium for the browser tests (report.test.mjs, live.test.mjs):
// MARKETSIM_CHROMIUM or /usr/bin/chromium, never a downloaded browser, with the flags every test
// uses plus the caller's own.

import fs from 'node:fs';
import { chromium } from 'playwright-core';

export const chromiumPath = process.env.MARKETSIM_CHROMIUM || '/usr/bin/chromium';

/** Starts the browser; fails with how to install it when it is missing. */
export async function launchChromium(extraArgs = []) {
  if (!fs.existsSync(chromiumPath)) {
    throw new Error(
      `no browser at ${chromiumPath}: install Debian's Chromium with \`apt-get install chromium\` ` +
        '(or point MARKETSIM_CHROMIUM at one); browsers are never downloaded by the tests',
    );
  }
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-quic',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
  });
}
