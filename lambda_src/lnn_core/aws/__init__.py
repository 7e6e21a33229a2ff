"""The AWS boundary: the adapters (S3, SNS, Lambda), the run table (DynamoDB), the SDK's configuration, the
encoding of arrays and items, usage metering and the dollar prices."""
