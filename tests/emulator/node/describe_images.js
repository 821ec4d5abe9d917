// DescribeImages through Tencent's official Node.js SDK against the emulator
// (tests/emulator/test_other_sdks.py). The endpoint keeps the real host name, because the
// SDK takes the TC3 service from its first label; an agent whose lookup answers 127.0.0.1
// keeps every byte on the loopback interface.
"use strict";
const http = require("http");
const tencentcloud = require("tencentcloud-sdk-nodejs-cvm");

const loopback = (hostname, options, callback) => {
  if (options && options.all) {
    callback(null, [{ address: "127.0.0.1", family: 4 }]);
  } else {
    callback(null, "127.0.0.1", 4);
  }
};

const client = new tencentcloud.cvm.v20170312.Client({
  credential: { secretId: process.env.TC_SECRET_ID, secretKey: process.env.TC_SECRET_KEY },
  region: process.env.EMULATOR_REGION,
  profile: {
    httpProfile: {
      protocol: "http://",
      endpoint: `cvm.tencentcloudapi.com:${process.env.EMULATOR_PORT}`,
      agent: new http.Agent({ lookup: loopback }),
      reqTimeout: 10,
    },
  },
});

client.DescribeImages({}).then(
  (answer) => {
    process.stdout.write(JSON.stringify(answer));
  },
  (error) => {
    process.stderr.write(`${error.code || ""} ${error.message}\n`);
    process.exit(1);
  },
);
