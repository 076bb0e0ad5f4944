/* Kairos Outfitters — the demo store's own JavaScript.
 *
 * This is the kind of code any shop already has: a cart (kept here in
 * localStorage under "demo.cart"), an add-to-cart button, a cart page and a
 * checkout. Its only coupling to Kairos is the handful of kairos.track() calls
 * a store adds to report its cart, checkout steps and orders.
 *
 * Privacy: the checkout fields (name, email, address, card) are plain inputs
 * that this file never reads. Nothing here sends anything anywhere; the only
 * data handed to Kairos is product, cart and order totals.
 *
 * No dependencies.
 */
(function () {
  "use strict";

  var CART_KEY = "demo.cart";
  var ORDER_KEY = "demo.lastOrder";
  var CUR = "EUR";
  // Pause between reporting the order and leaving the page, so the snippet
  // has a moment to send its batch before the page unloads.
  var LEAVE_DELAY_MS = 600;

  /* ---- Kairos, the safe way ------------------------------------------
   * The snippet loads async, so it may not be there yet: use the stub queue
   * it drains when it starts (window.kairos.q), or call it directly. */
  function kTrack(type, fields) {
    var k = (window.kairos = window.kairos || { q: [] });
    if (typeof k.track === "function") {
      try {
        k.track(type, fields);
      } catch (err) {
        // Never let analytics break the shop.
        if (window.console) console.warn("kairos.track failed", err);
      }
    } else {
      (k.q = k.q || []).push(["track", type, fields]);
    }
  }

  /* ---- the cart ------------------------------------------------------ */
  function round2(n) {
    return Math.round(n * 100) / 100;
  }

  function money(n) {
    return "\u20ac" + round2(n).toFixed(2);
  }

  function readCart() {
    try {
      var raw = window.localStorage.getItem(CART_KEY);
      var items = raw ? JSON.parse(raw) : [];
      if (!Array.isArray(items)) return [];
      return items.filter(function (it) {
        return it && typeof it.sku === "string" && typeof it.price === "number" && it.qty > 0;
      });
    } catch (err) {
      return [];
    }
  }

  function writeCart(items) {
    try {
      window.localStorage.setItem(CART_KEY, JSON.stringify(items));
    } catch (err) {
      /* storage full or disabled: the cart lives for this page only */
    }
  }

  function totals(items) {
    var total = 0;
    var count = 0;
    for (var i = 0; i < items.length; i++) {
      total += items[i].price * items[i].qty;
      count += items[i].qty;
    }
    return { total: round2(total), count: count };
  }

  var REPORTED = "demo.cartReported";

  function reportCart(items) {
    var t = totals(items);
    kTrack("cart", { value: t.total, items: t.count, cur: CUR });
    try { sessionStorage.setItem(REPORTED, "1"); } catch (e) { /* private mode */ }
  }

  // A cart kept from an earlier visit is news to a new session (a new tab):
  // report it once, not on every page, so "cart untouched for 10 minutes"
  // is not restarted by browsing.
  function reportCartOncePerSession() {
    var items = readCart();
    var reported = null;
    try { reported = sessionStorage.getItem(REPORTED); } catch (e) { /* private mode */ }
    if (!reported && totals(items).count > 0) reportCart(items);
  }

  function addItem(product, qty) {
    qty = qty || 1;
    var items = readCart();
    var found = null;
    for (var i = 0; i < items.length; i++) {
      if (items[i].sku === product.sku) found = items[i];
    }
    if (found) {
      found.qty += qty;
    } else {
      items.push({
        sku: product.sku,
        slug: product.slug,
        name: product.name,
        price: product.price,
        img: product.img,
        qty: qty,
      });
    }
    writeCart(items);
    kTrack("add_to_cart", { sku: product.sku, name: product.name, price: product.price, qty: qty });
    reportCart(items);
    updateCount(items);
    return items;
  }

  function removeItem(sku) {
    var items = readCart().filter(function (it) {
      return it.sku !== sku;
    });
    writeCart(items);
    reportCart(items);
    updateCount(items);
    return items;
  }

  function clearCart() {
    writeCart([]);
    updateCount([]);
  }

  /* ---- DOM helpers --------------------------------------------------- */
  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, k)) node.setAttribute(k, attrs[k]);
      }
    }
    if (text != null) node.textContent = text;
    return node;
  }

  function updateCount(items) {
    var n = totals(items || readCart()).count;
    var badges = document.querySelectorAll("[data-cart-count]");
    for (var i = 0; i < badges.length; i++) badges[i].textContent = String(n);
  }

  /* ---- product page -------------------------------------------------- */
  function initProduct() {
    var btn = $("add-to-cart");
    if (!btn) return;
    var notice = $("added-notice");
    var timer = null;
    btn.addEventListener("click", function () {
      addItem({
        sku: btn.getAttribute("data-sku"),
        slug: btn.getAttribute("data-slug"),
        name: btn.getAttribute("data-name"),
        price: parseFloat(btn.getAttribute("data-price")),
        img: btn.getAttribute("data-image"),
      });
      if (notice) notice.hidden = false;
      btn.textContent = "Added \u2713";
      btn.classList.add("added");
      clearTimeout(timer);
      timer = setTimeout(function () {
        btn.textContent = "Add to cart";
        btn.classList.remove("added");
      }, 1500);
    });
  }

  /* ---- cart page ----------------------------------------------------- */
  function renderCart() {
    var body = $("cart-items");
    if (!body) return;
    var items = readCart();
    var t = totals(items);
    while (body.firstChild) body.removeChild(body.firstChild);
    items.forEach(function (it) {
      var row = el("tr", { "class": "cart-item", "data-sku": it.sku });
      var prod = el("td", { "class": "cart-item-product" });
      if (it.img) prod.appendChild(el("img", { src: it.img, alt: "", width: "64", height: "48" }));
      var link = el("a", { href: "/demo/products/" + encodeURIComponent(it.slug || "") }, it.name);
      prod.appendChild(link);
      row.appendChild(prod);
      row.appendChild(el("td", { "class": "cart-item-price" }, money(it.price)));
      row.appendChild(el("td", { "class": "cart-item-qty" }, String(it.qty)));
      row.appendChild(el("td", { "class": "cart-item-subtotal" }, money(it.price * it.qty)));
      var cell = el("td");
      var rm = el(
        "button",
        { type: "button", "class": "remove-item secondary", "data-sku": it.sku, "data-kairos": "remove-item", "aria-label": "Remove " + it.name },
        "Remove"
      );
      rm.addEventListener("click", function () {
        removeItem(it.sku);
        renderCart();
      });
      cell.appendChild(rm);
      row.appendChild(cell);
      body.appendChild(row);
    });
    var total = $("cart-total");
    if (total) {
      total.textContent = money(t.total);
      total.setAttribute("data-total", t.total.toFixed(2));
    }
    var empty = items.length === 0;
    if ($("cart-empty")) $("cart-empty").hidden = !empty;
    if ($("cart-table")) $("cart-table").hidden = empty;
    if ($("cart-actions")) $("cart-actions").hidden = empty;
  }

  /* ---- checkout ------------------------------------------------------ */
  var currentStep = null;

  function showStep(step) {
    var sections = document.querySelectorAll(".checkout-step");
    for (var i = 0; i < sections.length; i++) {
      sections[i].hidden = sections[i].getAttribute("data-step") !== step;
    }
    var marks = document.querySelectorAll("#checkout-steps [data-step]");
    for (var j = 0; j < marks.length; j++) {
      marks[j].classList.toggle("current", marks[j].getAttribute("data-step") === step);
    }
    if (step !== currentStep) {
      currentStep = step;
      kTrack("checkout", { step: step });
    }
  }

  function renderSummary(items) {
    var list = $("summary-items");
    if (!list) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    items.forEach(function (it) {
      list.appendChild(el("li", null, it.qty + " \u00d7 " + it.name + " \u2014 " + money(it.price * it.qty)));
    });
    if ($("summary-total")) $("summary-total").textContent = money(totals(items).total);
  }

  function placeOrder(button) {
    var items = readCart();
    var t = totals(items);
    if (!items.length) return;
    button.disabled = true;
    button.textContent = "Placing your order\u2026";
    kTrack("checkout", { step: "place_order" });
    kTrack("purchase", { value: t.total, cur: CUR });
    clearCart();
    reportCart([]);
    try {
      window.sessionStorage.setItem(
        ORDER_KEY,
        JSON.stringify({ number: "KO-" + Date.now().toString(36).toUpperCase(), total: t.total })
      );
    } catch (err) {
      /* only used for the thank-you message */
    }
    setTimeout(function () {
      window.location.assign("/demo/thanks");
    }, LEAVE_DELAY_MS);
  }

  function initCheckout() {
    var form = $("checkout-form");
    if (!form) return;
    var items = readCart();
    renderSummary(items);
    if (!items.length) {
      form.hidden = true;
      if ($("checkout-empty")) $("checkout-empty").hidden = false;
      return;
    }
    showStep("shipping");
    $("to-payment").addEventListener("click", function () {
      showStep("payment");
    });
    $("back-to-shipping").addEventListener("click", function () {
      showStep("shipping");
    });
    $("place-order").addEventListener("click", function () {
      placeOrder(this);
    });
  }

  /* ---- thank-you page ------------------------------------------------ */
  function initThanks() {
    var ref = $("order-ref");
    if (!ref) return;
    try {
      var order = JSON.parse(window.sessionStorage.getItem(ORDER_KEY) || "null");
      if (order && order.number) {
        $("order-number").textContent = order.number;
        $("order-total").textContent = money(order.total);
        ref.hidden = false;
      }
    } catch (err) {
      /* nothing to show */
    }
  }

  function init() {
    reportCartOncePerSession();
    updateCount();
    initProduct();
    renderCart();
    initCheckout();
    initThanks();
  }

  // For the shop's own tests and for debugging in the console.
  window.demoStore = {
    readCart: readCart,
    addItem: addItem,
    removeItem: removeItem,
    clearCart: clearCart,
    totals: totals,
    track: kTrack,
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
