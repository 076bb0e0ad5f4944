// dist/k-overlay.js: the overlay behaviour, fetched by k.js on the first
// `show` (lazy.js). It hands createOverlay to k.js through the function on
// its own <script> element, and defines no global (so no variable here: the
// minifier would hoist it out of the bundle's wrapper).
import { createOverlay } from './overlay.js'

document.currentScript?.kairos?.(createOverlay)
