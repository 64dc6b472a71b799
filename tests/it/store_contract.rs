//! One contract suite, run against every session store adapter.

mod memory {
    handover_tests::for_every_contract_test!(handover_tests::memory_harness);
}

mod dynamodb {
    handover_tests::for_every_contract_test!(handover_tests::dynamodb_harness);
}
