import assert from "node:assert/strict";
import canonicalize from "canonicalize";
import fc from "fast-check";
import { canonicalJson, hashCanonical, sha256Hex } from "../../lib/edr/mod.ts";

function fromIeee(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt("0x" + hex));
  return view.getFloat64(0);
}

Deno.test("canonical JSON follows RFC 8785", async (t) => {
  await t.step("numbers serialize like the RFC's Appendix B table", () => {
    const table: Array<[string, string]> = [
      ["0000000000000000", "0"],
      ["8000000000000000", "0"],
      ["0000000000000001", "5e-324"],
      ["8000000000000001", "-5e-324"],
      ["7fefffffffffffff", "1.7976931348623157e+308"],
      ["ffefffffffffffff", "-1.7976931348623157e+308"],
      ["4340000000000000", "9007199254740992"],
      ["c340000000000000", "-9007199254740992"],
      ["4430000000000000", "295147905179352830000"],
      ["44b52d02c7e14af5", "9.999999999999997e+22"],
      ["44b52d02c7e14af6", "1e+23"],
      ["44b52d02c7e14af7", "1.0000000000000001e+23"],
      ["444b1ae4d6e2ef4e", "999999999999999700000"],
      ["444b1ae4d6e2ef4f", "999999999999999900000"],
      ["444b1ae4d6e2ef50", "1e+21"],
      ["3eb0c6f7a0b5ed8c", "9.999999999999997e-7"],
      ["3eb0c6f7a0b5ed8d", "0.000001"],
      ["41b3de4355555553", "333333333.3333332"],
      ["41b3de4355555554", "333333333.33333325"],
      ["41b3de4355555555", "333333333.3333333"],
      ["41b3de4355555556", "333333333.3333334"],
      ["41b3de4355555557", "333333333.33333343"],
      ["becbf647612f3696", "-0.0000033333333333333333"],
      ["43143ff3c1cb0959", "1424953923781206.2"],
    ];
    for (const [ieee, expected] of table) assert.equal(canonicalJson(fromIeee(ieee)), expected, ieee);
  });

  await t.step("common literals: 1e21, 1e-7 and minus zero", () => {
    assert.equal(canonicalJson(1e21), "1e+21");
    assert.equal(canonicalJson(1e-7), "1e-7");
    assert.equal(canonicalJson(-0), "0");
    assert.equal(canonicalJson(4.5), "4.5");
    assert.equal(canonicalJson(0.002), "0.002");
  });

  await t.step("integers beyond 2^53 lose precision at parse time, as the RFC warns", () => {
    assert.equal(canonicalJson(JSON.parse("9007199254740993")), "9007199254740992");
  });

  await t.step("NaN, Infinity and undefined are refused", () => {
    assert.throws(() => canonicalJson(NaN));
    assert.throws(() => canonicalJson(Infinity));
    assert.throws(() => canonicalJson(undefined), /no JSON representation/);
  });

  await t.step("properties sort by UTF-16 code units (RFC 8785 §3.2.3 example)", () => {
    const input = {
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis",
    };
    assert.equal(
      canonicalJson(input),
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  await t.step("the RFC's §3.2.2 sample: whitespace removed, numbers and strings normalized", () => {
    const text = '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n' +
      '  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n  "literals": [null, true, false]\n}';
    assert.equal(
      canonicalJson(JSON.parse(text)),
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  await t.step("strings escape only what JSON requires", () => {
    assert.equal(
      canonicalJson('\u0000\b\t\n\f\r\u001f"\\/\u007f\u00e9'),
      '"\\u0000\\b\\t\\n\\f\\r\\u001f\\"\\\\/\u007f\u00e9"',
    );
  });

  await t.step("nested objects sort at every level and arrays keep their order", () => {
    assert.equal(canonicalJson({ b: [3, { z: 1, a: 2 }], a: null }), '{"a":null,"b":[3,{"a":2,"z":1}]}');
  });
});

Deno.test("the native fast path agrees with the canonicalize library on every input", async (t) => {
  await t.step("random JSON values, including ones whose keys are already in order", () => {
    const sortedDeep = (value: unknown): unknown => JSON.parse(canonicalize(value)!);
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (value, presort) => {
        const input = presort ? sortedDeep(value) : value;
        assert.equal(canonicalJson(input), canonicalize(input));
      }),
      { numRuns: 1000 },
    );
  });

  await t.step("integer-like keys, which JavaScript enumerates first, still sort as strings", () => {
    assert.equal(canonicalJson({ "10": 1, "9": 2, a: 3 }), '{"10":1,"9":2,"a":3}');
  });

  await t.step("values JSON.stringify would rewrite are left to the library", () => {
    assert.throws(() => canonicalJson({ a: "\ud800" }), /surrogate/i);
    assert.throws(() => canonicalJson({ ["\udc00"]: 1 }), /surrogate/i);
    assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}');
    assert.equal(canonicalJson({ at: new Date(0) }), '{"at":"1970-01-01T00:00:00.000Z"}');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => canonicalJson(cyclic), /circular/i);
  });
});

Deno.test("hash helpers", async (t) => {
  await t.step("sha256Hex matches the FIPS 180-2 'abc' vector for strings and bytes", () => {
    const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert.equal(sha256Hex("abc"), abc);
    assert.equal(sha256Hex(new TextEncoder().encode("abc")), abc);
  });

  await t.step("hashCanonical does not depend on key order or whitespace", () => {
    assert.equal(hashCanonical({ a: 1, b: [1, 2] }), hashCanonical(JSON.parse('{ "b": [1, 2], "a": 1.0 }')));
    assert.equal(hashCanonical({ a: 1 }), sha256Hex('{"a":1}'));
  });
});
